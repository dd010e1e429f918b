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
