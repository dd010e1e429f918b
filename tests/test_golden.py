"""Numerical equivalence with the authors' code, from the fixtures in ``../shared/golden``.

Each fixture holds the authors' ``state_dict`` (their key names), inputs, the outputs their
``forward`` produced, and the keyword arguments of their class (``config``); ``manifest.json``
names the class. The network is built through BasicSR's registry from exactly that class name and
those arguments (so the authors' constructor signatures are part of what is tested), loaded with
its own ``load_state_dict`` (strict: the mapping from the authors' key layout, where there is one,
is the network's job) and run in eval mode. Every output must be within 1e-5 of the saved one.

No authors' code is imported here: only their saved tensors are read.

Two conventions of the authors' code that are not part of the function are accounted for:

* M3SNet's ``forward`` pads to a multiple of 16 and does not crop (fixture README); ours crops,
  so the top-left input-sized crop of the saved output is compared.
* SwinIR is BasicSR's class, which has no padding step; the authors' forward reflect-pads to the
  window and crops. The plugin wraps it (:func:`ecma_basicsr.archs.window_padding.add_window_padding`)
  wherever it runs it, and so does this test. The wrapper is applied to every network: it must be
  a no-op for the ones that pad themselves.
"""
import json
import os.path as osp

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import SHARED

GOLDEN = osp.join(SHARED, 'golden')
TOL = 1e-5
# Classes whose official forward returns the padded output uncropped (see the fixture README).
UNCROPPED = {'M3SNet', 'M3SNetLocal'}


def _manifest():
    path = osp.join(GOLDEN, 'manifest.json')
    if not osp.isfile(path):
        return [pytest.param(None, id='no-golden-fixtures')]
    with open(path) as f:
        entries = json.load(f)
    return [pytest.param(e, id=e['file']) for e in entries]


def load_fixture(entry):
    """The fixture dict of a manifest entry, or skip with the reason."""
    if entry is None:
        pytest.skip(f'{GOLDEN}/manifest.json not found: the golden fixtures live in ../shared/golden beside the '
                    'checkout (or set ECMA_SHARED)')
    path = osp.join(GOLDEN, entry['file'])
    if not osp.isfile(path):
        pytest.skip(f'{path} is listed in the manifest but missing')
    return torch.load(path, map_location='cpu', weights_only=True)


def build_official(cls_name, config):
    """Our registered network for the authors' class name and constructor arguments."""
    from ecma_basicsr.archs.window_padding import add_window_padding
    net = ARCH_REGISTRY.get(cls_name)(**config)
    return add_window_padding(net)


def compare(entry, fixture):
    """Max |ours - official| over every output of every input (and the shapes); raises on a mismatch."""
    net = build_official(entry['cls'], fixture['config'])
    net.load_state_dict(fixture['state_dict'])
    net = net.float().eval()
    worst = 0.0
    with torch.no_grad():
        for x, ref in zip(fixture['inputs'], fixture['outputs']):
            out = net(x)
            outs, refs = (out, ref) if isinstance(ref, (list, tuple)) else ([out], [ref])
            assert isinstance(outs, (list, tuple)) and len(outs) == len(refs), \
                f"{entry['file']}: expected {len(refs)} outputs, got {type(out).__name__}"
            for o, r in zip(outs, refs):
                if entry['cls'] in UNCROPPED:
                    r = r[..., :x.shape[-2], :x.shape[-1]]
                assert o.shape == r.shape, f"{entry['file']}: output {tuple(o.shape)} vs official {tuple(r.shape)}"
                worst = max(worst, (o - r).abs().max().item())
    return net, worst


@pytest.mark.parametrize('entry', _manifest())
def test_matches_authors_code(entry):
    fixture = load_fixture(entry)
    _, worst = compare(entry, fixture)
    assert worst <= TOL, f"{entry['file']}: max |ours - official| = {worst:.3g} > {TOL}"


@pytest.mark.parametrize('entry', _manifest())
def test_parameter_count_matches_authors(entry):
    """Same number of learned parameters as the authors' network (their state dict minus buffers)."""
    fixture = load_fixture(entry)
    net = build_official(entry['cls'], fixture['config'])
    ours = sum(p.numel() for p in net.parameters())
    official = sum(v.numel() for k, v in fixture['state_dict'].items()
                   if v.is_floating_point() and not _is_buffer_key(k))
    assert ours == official, f"{entry['file']}: {ours} parameters, the authors' network has {official}"


# Official buffers stored in the fixtures (README "Buffers"): SwinIR masks / indices, BatchNorm statistics.
_BUFFER_SUFFIXES = ('attn_mask', 'relative_position_index', 'running_mean', 'running_var', 'num_batches_tracked')


def _is_buffer_key(key):
    return key.endswith(_BUFFER_SUFFIXES)


# ------------------------------------------------------------------------------------------------
# The same fixtures through the plugin's own inference paths, with the weights wrapped the way each
# network's authors publish them.
# ------------------------------------------------------------------------------------------------
def _module_prefixed(sd):
    return {'module.' + k: v for k, v in sd.items()}


# family -> (how the published file wraps the state dict, param_key_g an option file would carry)
PUBLISHED_FORMAT = {
    'NAFNet': (lambda sd: {'params': sd}, 'params'),  # BasicSR checkpoints
    'IMDN': (_module_prefixed, None),  # bare state dict saved from DataParallel
    'M3SNet': (lambda sd: {'epoch': 1, 'state_dict': _module_prefixed(sd), 'optimizer': {}}, 'state_dict'),
    'IRNeXt': (lambda sd: {'model': sd}, 'model'),  # .pkl files of the release
    'SwinIR': (lambda sd: {'params': sd}, 'params'),
    # Lightning .ckpt files: the network under 'model.' in 'state_dict', beside the engine's other entries
    'GRL': (lambda sd: {'state_dict': {'model.' + k: v for k, v in sd.items()}, 'epoch': 1}, 'state_dict'),
}


def _family(cls_name):
    return cls_name[:-len('Local')] if cls_name.endswith('Local') else cls_name


def _model_outputs(entry, fixture, tmp_path, param_key):
    from basicsr.models import build_model
    wrap, _ = PUBLISHED_FORMAT[_family(entry['cls'])]
    path = tmp_path / 'published.pth'
    torch.save(wrap(fixture['state_dict']), path)
    first = fixture['outputs'][0]
    scale = (first[-1] if isinstance(first, list) else first).shape[-1] // fixture['inputs'][0].shape[-1]
    opt = {'name': 'golden', 'model_type': 'ECMAModel', 'is_train': False, 'dist': False, 'num_gpu': 0, 'rank': 0,
           'world_size': 1, 'scale': scale, 'network_g': {'type': entry['cls'], **fixture['config']},
           'path': {'pretrain_network_g': str(path), 'param_key_g': param_key, 'strict_load_g': True}}
    model = build_model(opt)
    outs = []
    for x in fixture['inputs']:
        model.feed_data({'lq': x})
        model.test()
        outs.append(model.output)
    return outs


def _worst(entry, fixture, outputs):
    worst = 0.0
    for x, out, ref in zip(fixture['inputs'], outputs, fixture['outputs']):
        outs, refs = (out, ref) if isinstance(ref, list) else ([out], [ref])
        for o, r in zip(outs, refs):
            if entry['cls'] in UNCROPPED:
                r = r[..., :x.shape[-2], :x.shape[-1]]
            assert o.shape == r.shape
            worst = max(worst, (o - r).abs().max().item())
    return worst


@pytest.mark.parametrize('requested', ['as-published', 'params'])
@pytest.mark.parametrize('entry', _manifest())
def test_basicsr_model_loads_the_published_format_and_reproduces(entry, requested, tmp_path):
    """ECMAModel (BasicSR's load_network + test): published wrappers, ``module.`` prefixes, SwinIR padding.

    ``params`` is BasicSR's default ``param_key_g``: the loader falls back to the entry the file has.
    """
    fixture = load_fixture(entry)
    if _family(entry['cls']) not in PUBLISHED_FORMAT:
        pytest.skip(f"{entry['cls']}: no published checkpoint format recorded in PUBLISHED_FORMAT (the network "
                    'that owns it adds its entry)')
    param_key = PUBLISHED_FORMAT[_family(entry['cls'])][1] if requested == 'as-published' else 'params'
    worst = _worst(entry, fixture, _model_outputs(entry, fixture, tmp_path, param_key))
    assert worst <= TOL, f"{entry['file']}: max |ours - official| = {worst:.3g} through ECMAModel"


@pytest.mark.parametrize('name', ['swinir_light_x4.pt', 'swinir_classical_x4.pt'])
def test_bench_and_restore_build_pad_swinir_as_the_authors(name, tmp_path):
    """``basicsr bench`` / ``restore`` build networks with ``bench.networks.build``: SwinIR on a size that is
    not a multiple of the window must give the authors' output."""
    from ecma_basicsr.bench.networks import build, parse_spec
    fixture = load_fixture({'file': name, 'cls': 'SwinIR'})
    path = tmp_path / 'swinir.pth'
    torch.save({'params': fixture['state_dict']}, path)
    args = ','.join(f'{k}={v}' for k, v in fixture['config'].items()).replace(' ', '')
    net = build(parse_spec(f'SwinIR:{args}@{path}'))
    with torch.no_grad():
        worst = max((net(x) - ref).abs().max().item() for x, ref in zip(fixture['inputs'], fixture['outputs']))
    assert fixture['inputs'][1].shape[-1] % 8 != 0 and worst <= TOL


def test_a_file_without_known_weights_is_refused_with_its_entries(tmp_path):
    from basicsr.models import build_model

    from ecma_basicsr.engine.checkpoint import CheckpointError
    path = tmp_path / 'odd.pth'
    torch.save({'weights': {'intro.weight': torch.zeros(1)}, 'epoch': 3}, path)
    opt = {'name': 'odd', 'model_type': 'ECMAModel', 'is_train': False, 'dist': False, 'num_gpu': 0, 'scale': 1,
           'network_g': {'type': 'NAFNet', 'width': 8},
           'path': {'pretrain_network_g': str(path), 'param_key_g': 'params'}}
    with pytest.raises(CheckpointError, match=r"no 'params' entry and no weights under .*\(entries: epoch, weights\)"):
        build_model(opt)
