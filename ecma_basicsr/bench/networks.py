"""Which networks ``basicsr bench`` compares: presets, the spec grammar, building, checkpoints.

A network spec is one of:

* a preset label (case-insensitive), e.g. ``ECMA-T``, ``NAFNet-GoPro-width64``, ``SwinIR-light-x4``
  (the ``PRESETS`` tables of the arch files, :func:`presets`; ``python -m ecma_basicsr.presets`` lists
  them); ``paper`` and ``all`` expand to groups (:data:`GROUPS`);
* a registered arch with constructor arguments, ``ARCH:key=value,key=value``, e.g.
  ``ECMA:variant=T``, ``NAFNet:variant=GoPro-width32``, ``ECMA:width=16,enc_blocks=[1,1,1,1]``
  (values are YAML, so lists and booleans work); a preset takes overrides the same way
  (``ECMA-T:large_kernel_mode=spatial``);
* a BasicSR option file (``*.yml``): its ``network_g``, ``scale``, ``name`` and
  ``path:pretrain_network_g`` / ``param_key_g``.

Any spec may start with ``LABEL=`` to name the row and end with ``@CHECKPOINT`` (``@none``: no
weights, e.g. for an option file whose ``pretrain_network_g`` is not trained yet).
Super-resolution networks (scale > 1) are measured at an *output* size: a ``1280x720`` size
means a 320x180 input at x4, as the papers count SR MACs (ECMA Table 1 and 5).
"""
import inspect
import os.path as osp
from dataclasses import dataclass, field

import torch
import yaml

from . import BenchError

GROUPS = {
    'paper': ['ECMA-T', 'ECMA-S', 'ECMA-B', 'ECMA-SR', 'NAFNet-GoPro-width32', 'NAFNet-GoPro-width64',
              'SwinIR-light-x4', 'SwinIR-x4', 'EDSR-baseline-x4'],
    'all': ['ECMA-T', 'ECMA-S', 'ECMA-B', 'ECMA-SR', 'NAFNet-GoPro-width32', 'NAFNet-GoPro-width64',
            'SwinIR-light-x4', 'SwinIR-x4', 'EDSR-baseline-x4', 'RCAN-x4', 'IMDN-x4', 'GRL-T-SRx4', 'GRL-S-SRx4',
            'GRL-B-SRx4', 'GRL-B-Deblur', 'M3SNet-GoPro-width32', 'M3SNet-GoPro-width64', 'IRNeXt-gopro',
            'HiIR-B-x4', 'HiIR-B'],
}


def presets():
    """Every preset of the arch files (:func:`ecma_basicsr.archs.presets.all_presets`): ``{label: Preset}``."""
    _registry()
    from ecma_basicsr.archs.presets import all_presets
    return all_presets()




@dataclass
class NetSpec:
    """One network of the comparison (JSON-serialisable for the worker).

    Attributes:
        label (str): Row name.
        arch (str): Registered arch name.
        kwargs (dict): Constructor arguments.
        task (str): 'sr' or 'restore'.
        scale (int): Output / input size ratio.
        in_ch (int): Image channels.
        checkpoint (str | None): Weights file.
        param_key (str | None): Key of the state dict inside the checkpoint (None: auto).
        source (str): The spec as written.
    """
    label: str
    arch: str
    kwargs: dict = field(default_factory=dict)
    task: str = 'restore'
    scale: int = 1
    in_ch: int = 3
    checkpoint: str = None
    param_key: str = None
    source: str = ''

    def config(self):
        return ', '.join(f'{k}={v}' for k, v in self.kwargs.items())

    def to_dict(self):
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def _registry():
    from basicsr.utils.registry import ARCH_REGISTRY

    import ecma_basicsr  # noqa: F401  (fills the registry)
    return ARCH_REGISTRY


def _split_top_level(text, sep=','):
    """Split on ``sep`` outside brackets/quotes (so ``enc_blocks=[1,1,2,9]`` stays whole)."""
    parts, depth, quote, cur = [], 0, None, ''
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch in '[({':
            depth += 1
        elif ch in '])}':
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(cur)
            cur = ''
            continue
        cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def parse_kwargs(text, where):
    """``a=1,b=[1,2],c=x`` -> dict with YAML-typed values."""
    out = {}
    for item in _split_top_level(text):
        if '=' not in item:
            raise BenchError(f"{where}: '{item}' is not key=value. Write e.g. ECMA:variant=T,width=16.")
        key, value = item.split('=', 1)
        try:
            out[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError as err:
            raise BenchError(f"{where}: cannot read the value of '{key.strip()}': {err}") from err
    return out


# constructor arguments that hold the upscale factor (NAFNetSR follows its authors: up_scale)
_SCALE_KEYS = ('upscale', 'up_scale', 'scale')


def infer_scale(arch, kwargs):
    """Upscale factor from the kwargs or the constructor's default (SwinIR without upsampler: 1)."""
    if arch == 'SwinIR' and not kwargs.get('upsampler'):
        return 1
    for key in _SCALE_KEYS:
        if key in kwargs:
            return int(kwargs[key])
    cls = _registry().get(arch)
    params = inspect.signature(cls.__init__).parameters
    for key in _SCALE_KEYS:
        if key in params and params[key].default is not inspect.Parameter.empty:
            return int(params[key].default)
    return 1


def infer_in_ch(kwargs):
    from ecma_basicsr.archs.arch_util import IN_CHANNEL_ARGS
    for key in IN_CHANNEL_ARGS:
        if key in kwargs:
            return int(kwargs[key])
    return 3


def _unknown_name(name):
    archs = sorted(k for k in _registry().keys() if not k.endswith('_basicsr'))
    return BenchError(f"unknown network '{name}'. Use a preset ({', '.join(presets())}; groups: "
                      f"{', '.join(GROUPS)}), a registered arch with arguments such as 'ECMA:variant=T' "
                      f"(registered: {', '.join(archs)}), or a BasicSR option file (*.yml).")


def _from_option_file(path, label):
    if not osp.isfile(path):
        raise BenchError(f"option file '{path}' does not exist.")
    with open(path) as f:
        opt = yaml.safe_load(f) or {}
    net = dict(opt.get('network_g') or {})
    if 'type' not in net:
        raise BenchError(f"option file '{path}' has no network_g:type; bench needs the network section.")
    arch = net.pop('type')
    paths = opt.get('path') or {}
    scale = int(opt.get('scale') or infer_scale(arch, net))
    return dict(label=label or opt.get('name') or osp.splitext(osp.basename(path))[0], arch=arch, kwargs=net,
                scale=scale, checkpoint=paths.get('pretrain_network_g'),
                param_key=paths.get('param_key_g', 'params'))


def parse_spec(text):
    """Parse one ``--nets`` entry into a :class:`NetSpec` (see the module docstring)."""
    source = text
    text = text.strip()
    if not text:
        raise BenchError('empty network spec.')
    label = None
    head = text.split(':', 1)[0]
    if '=' in head:  # LABEL=...
        label, text = text.split('=', 1)
        label = label.strip()
    checkpoint = None
    if '@' in text:
        text, checkpoint = text.rsplit('@', 1)
        checkpoint = checkpoint.strip()
    no_weights = checkpoint is not None and checkpoint.lower() == 'none'
    if text.endswith(('.yml', '.yaml')):
        d = _from_option_file(text, label)
        if checkpoint:
            d['checkpoint'] = None if no_weights else checkpoint
        d.update(source=source)
        d['task'] = 'sr' if d['scale'] > 1 else 'restore'
        return _finish(d)
    name, _, arg_text = text.partition(':')
    name = name.strip()
    overrides = parse_kwargs(arg_text, f"network '{source}'") if arg_text else {}
    table = presets()
    preset = {k.lower(): k for k in table}.get(name.lower())
    if preset:
        arch, kwargs = table[preset].arch, dict(table[preset].kwargs, **overrides)
        default_label = preset + (f'({arg_text})' if arg_text else '')
    elif name in _registry():
        arch, kwargs = name, overrides
        default_label = name + (f'({arg_text})' if arg_text else '')
    else:
        raise _unknown_name(name)
    scale = infer_scale(arch, kwargs)
    d = dict(label=label or default_label, arch=arch, kwargs=kwargs, scale=scale,
             checkpoint=None if no_weights else checkpoint,
             task='sr' if scale > 1 else 'restore', source=source)
    return _finish(d)


def _finish(d):
    spec = NetSpec(**d)
    spec.in_ch = infer_in_ch(spec.kwargs)
    return spec


def expand_specs(entries, weights=()):
    """Parse ``--nets`` entries (groups expanded) and attach ``--weights LABEL=PATH`` files.

    Raises:
        BenchError: unknown name, duplicate label, or a checkpoint file that does not exist.
    """
    specs = []
    for entry in entries:
        if entry.lower() in GROUPS:
            specs += [parse_spec(name) for name in GROUPS[entry.lower()]]
        else:
            specs.append(parse_spec(entry))
    by_label = {}
    for spec in specs:
        if spec.label in by_label:
            raise BenchError(f"network label '{spec.label}' appears twice; name one of them with LABEL=spec.")
        by_label[spec.label] = spec
    for item in weights or ():
        if '=' not in item:
            raise BenchError(f"--weights '{item}' must be LABEL=PATH (labels: {', '.join(by_label)}).")
        label, path = item.split('=', 1)
        if label not in by_label:
            raise BenchError(f"--weights names '{label}', which is not a network of this run "
                             f"(labels: {', '.join(by_label)}).")
        by_label[label].checkpoint = path
    for spec in specs:
        if spec.checkpoint and not osp.isfile(spec.checkpoint):
            raise BenchError(f"checkpoint for '{spec.label}' not found: '{spec.checkpoint}'. Give the path of "
                             f"an existing .pth file (--weights {spec.label}=PATH or SPEC@PATH), or measure the "
                             f"network without weights ({spec.source.split('@')[0]}@none).")
    return specs


# ------------------------------------------------------------------------------------------------
# building and loading
# ------------------------------------------------------------------------------------------------
def build(spec, device='cpu'):
    """The network of ``spec`` in eval mode on ``device``, weights loaded when it has a checkpoint."""
    import logging

    from basicsr.archs import build_network
    from basicsr.utils import get_root_logger

    from ecma_basicsr.archs.window_padding import add_window_padding

    get_root_logger().setLevel(logging.WARNING)  # "Network [X] is created." per build is noise here
    try:
        net = build_network({'type': spec.arch, **spec.kwargs})
    except TypeError as err:
        raise BenchError(f"cannot build '{spec.label}' ({spec.arch} with {spec.kwargs}): {err}") from err
    if spec.checkpoint:
        load_checkpoint(net, spec.checkpoint, spec.param_key, spec.label)
    add_window_padding(net)  # BasicSR's SwinIR: reflect-pad to the window and crop, as the authors' forward
    return net.to(device).eval()


def select_state_dict(ckpt, param_key, path):
    """The state dict inside a checkpoint (:func:`ecma_basicsr.engine.checkpoint.select_weights`)."""
    from ecma_basicsr.engine.checkpoint import select_weights
    return select_weights(ckpt, param_key, path)[0]


def load_checkpoint(net, path, param_key=None, label=None):
    """Load ``path`` into ``net`` (strict), with a clear error naming what does not fit."""
    from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin, check_state_dict
    from ecma_basicsr.engine.checkpoint import safe_load

    try:
        ckpt = safe_load(path)
    except Exception as err:
        raise BenchError(f"cannot read checkpoint '{path}' for '{label}': {err}") from err
    state = select_state_dict(ckpt, param_key, path)
    try:
        if not isinstance(net, CheckedLoadMixin):  # the plugin's networks map and check in load_state_dict
            state = check_state_dict(net, state, strict=True, name=label)
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BenchError(str(err)) from err
    return net


def validate(spec):
    """Build ``spec`` on the meta device (no memory, no time) and check its checkpoint fits.

    Catches wrong constructor arguments and mis-fitting weights before a long run starts.
    """
    import logging

    from basicsr.archs import build_network
    from basicsr.utils import get_root_logger

    get_root_logger().setLevel(logging.WARNING)
    try:
        with torch.device('meta'):
            net = build_network({'type': spec.arch, **spec.kwargs})
    except (TypeError, ValueError, KeyError) as err:
        raise BenchError(f"cannot build '{spec.label}' ({spec.arch} with {spec.kwargs}): {err}") from err
    except Exception:  # some archs compute buffers on construction that meta tensors cannot; the worker will tell
        return None
    if spec.checkpoint:
        from ecma_basicsr.archs.state_dict_check import check_state_dict
        from ecma_basicsr.engine.checkpoint import safe_load
        state = select_state_dict(safe_load(spec.checkpoint), spec.param_key, spec.checkpoint)
        if hasattr(net, 'map_checkpoint'):  # the authors' key layout, as load_state_dict will map it
            state = net.map_checkpoint(state)
        try:
            check_state_dict(net, state, strict=True, name=spec.label, hint=getattr(net, 'checkpoint_hint', None))
        except RuntimeError as err:
            raise BenchError(str(err)) from err
    return sum(p.numel() for p in net.parameters())
