"""Which networks ``basicsr bench`` compares: presets, the spec grammar, building, checkpoints.

A network spec is one of:

* a preset label (case-insensitive), e.g. ``ECMA-T``, ``NAFNet-w64``, ``SwinIR-light-x4``
  (:data:`PRESETS`); ``paper`` and ``all`` expand to groups (:data:`GROUPS`);
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

# label: (arch, kwargs, task). task: 'sr' (scale > 1) or 'restore' (deblur / denoise, scale 1).
_SWINIR_COMMON = dict(in_chans=3, window_size=8, img_range=1.0, mlp_ratio=2.0, resi_connection='1conv')
PRESETS = {
    # ECMA paper, Table 1
    'ECMA-T': ('ECMA', dict(variant='T'), 'restore'),
    'ECMA-S': ('ECMA', dict(variant='S'), 'restore'),
    'ECMA-B': ('ECMA', dict(variant='B'), 'restore'),
    'ECMA-SR': ('ECMASR', dict(upscale=4), 'sr'),
    # NAFNet (GoPro configs; Table 10 / Fig. 1 comparisons)
    'NAFNet-w32': ('NAFNet', dict(variant='GoPro-width32'), 'restore'),
    'NAFNet-w64': ('NAFNet', dict(variant='GoPro-width64'), 'restore'),
    # SwinIR (basicsr's arch), Table 5
    'SwinIR-light-x4': ('SwinIR', dict(_SWINIR_COMMON, upscale=4, img_size=64, embed_dim=60, depths=[6] * 4,
                                       num_heads=[6] * 4, upsampler='pixelshuffledirect'), 'sr'),
    'SwinIR-x4': ('SwinIR', dict(_SWINIR_COMMON, upscale=4, img_size=48, embed_dim=180, depths=[6] * 6,
                                 num_heads=[6] * 6, upsampler='pixelshuffle'), 'sr'),
    # basicsr's EDSR / RCAN
    'EDSR-baseline-x4': ('EDSR', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4,
                                      res_scale=1.0), 'sr'),
    'RCAN-x4': ('RCAN', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_group=10, num_block=20, upscale=4), 'sr'),
    # the plugin's baselines
    'IMDN-x4': ('IMDN', dict(upscale=4), 'sr'),
    'GRL-T-x4': ('GRL', dict(variant='T', upscale=4), 'sr'),
    'GRL-S-x4': ('GRL', dict(variant='S', upscale=4), 'sr'),
    'GRL-B-x4': ('GRL', dict(variant='B', upscale=4), 'sr'),
    'GRL-B-deblur': ('GRL', dict(variant='B', upscale=1, task='deblur'), 'restore'),
    'M3SNet-w32': ('M3SNet', dict(variant='GoPro-width32'), 'restore'),
    'M3SNet-w64': ('M3SNet', dict(variant='GoPro-width64'), 'restore'),
    'IRNeXt': ('IRNeXt', dict(variant='gopro'), 'restore'),
    'HiIR-B-x4': ('HiIR', dict(variant='B', upscale=4), 'sr'),
    'HiIR-B': ('HiIR', dict(variant='B', upscale=1), 'restore'),
}
GROUPS = {
    'paper': ['ECMA-T', 'ECMA-S', 'ECMA-B', 'ECMA-SR', 'NAFNet-w32', 'NAFNet-w64', 'SwinIR-light-x4', 'SwinIR-x4',
              'EDSR-baseline-x4'],
    'all': list(PRESETS),
}
# Archs whose forward needs H, W to be multiples of the window (basicsr's SwinIR raises otherwise).
PAD_MULTIPLE_KEY = {'SwinIR': 'window_size'}
_IN_CH_KEYS = ('in_ch', 'in_channels', 'in_nc', 'img_channel', 'num_in_ch', 'in_chans')
_PARAM_KEYS = ('params', 'params_ema', 'state_dict', 'model', 'net')


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
        pad_multiple (int): Pad the input to this multiple around the forward (1: none).
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
    pad_multiple: int = 1
    source: str = ''

    def config(self):
        return ', '.join(f'{k}={v}' for k, v in self.kwargs.items())

    def to_dict(self):
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def _registry():
    import ecma_basicsr  # noqa: F401  (fills the registry)
    from basicsr.utils.registry import ARCH_REGISTRY
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


def infer_scale(arch, kwargs):
    """Upscale factor from the kwargs or the constructor's default (SwinIR without upsampler: 1)."""
    if arch == 'SwinIR' and not kwargs.get('upsampler'):
        return 1
    for key in ('upscale', 'scale'):
        if key in kwargs:
            return int(kwargs[key])
    cls = _registry().get(arch)
    params = inspect.signature(cls.__init__).parameters
    for key in ('upscale', 'scale'):
        if key in params and params[key].default is not inspect.Parameter.empty:
            return int(params[key].default)
    return 1


def infer_in_ch(kwargs):
    for key in _IN_CH_KEYS:
        if key in kwargs:
            return int(kwargs[key])
    return 3


def _unknown_name(name):
    archs = sorted(k for k in _registry()._obj_map if not k.endswith('_basicsr'))
    return BenchError(f"unknown network '{name}'. Use a preset ({', '.join(PRESETS)}; groups: "
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
    preset = {k.lower(): k for k in PRESETS}.get(name.lower())
    if preset:
        arch, kwargs, _ = PRESETS[preset]
        kwargs = dict(kwargs, **overrides)
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
    key = PAD_MULTIPLE_KEY.get(spec.arch)
    if key:
        default = inspect.signature(_registry().get(spec.arch).__init__).parameters[key].default
        spec.pad_multiple = int(spec.kwargs.get(key, default))
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
class PadToMultiple(torch.nn.Module):
    """Reflect-pad H, W to a multiple around a network that needs it, crop the output back."""

    def __init__(self, net, multiple, scale):
        super().__init__()
        self.net, self.multiple, self.scale = net, multiple, scale

    def forward(self, x):
        from ecma_basicsr.archs.arch_util import crop_to, pad_to_multiple
        x, size = pad_to_multiple(x, self.multiple, mode='reflect')
        return crop_to(self.net(x), size, self.scale)


def build(spec, device='cpu'):
    """The network of ``spec`` in eval mode on ``device``, weights loaded when it has a checkpoint."""
    from basicsr.archs import build_network
    from basicsr.utils import get_root_logger
    import logging

    get_root_logger().setLevel(logging.WARNING)  # "Network [X] is created." per build is noise here
    try:
        net = build_network({'type': spec.arch, **spec.kwargs})
    except TypeError as err:
        raise BenchError(f"cannot build '{spec.label}' ({spec.arch} with {spec.kwargs}): {err}") from err
    if spec.checkpoint:
        load_checkpoint(net, spec.checkpoint, spec.param_key, spec.label)
    if spec.pad_multiple > 1:
        net = PadToMultiple(net, spec.pad_multiple, spec.scale)
    return net.to(device).eval()


def select_state_dict(ckpt, param_key, path):
    """The state dict inside a checkpoint: ``param_key``, else the first of params/params_ema/..."""
    if not isinstance(ckpt, dict):
        raise BenchError(f"checkpoint '{path}' holds a {type(ckpt).__name__}, not a state dict.")
    if param_key:
        if param_key not in ckpt:
            if all(torch.is_tensor(v) for v in ckpt.values()):
                return ckpt  # a bare state dict (BasicSR's param_key_g: ~)
            raise BenchError(f"checkpoint '{path}' has no key '{param_key}' (it has: {', '.join(map(str, ckpt))}). "
                             'Set param_key_g to one of them.')
        return ckpt[param_key]
    for key in _PARAM_KEYS:
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    return ckpt


def load_checkpoint(net, path, param_key=None, label=None):
    """Load ``path`` into ``net`` (strict), with a clear error naming what does not fit."""
    from ecma_basicsr.engine.checkpoint import safe_load
    from ecma_basicsr.archs.state_dict_check import check_state_dict

    try:
        ckpt = safe_load(path)
    except Exception as err:
        raise BenchError(f"cannot read checkpoint '{path}' for '{label}': {err}") from err
    state = select_state_dict(ckpt, param_key, path)
    hint = getattr(net, 'checkpoint_hint', None)
    try:
        state = check_state_dict(net, state, strict=True, name=label, hint=hint)
    except RuntimeError as err:
        raise BenchError(str(err)) from err
    net.load_state_dict(state, strict=True)
    return net


def validate(spec):
    """Build ``spec`` on the meta device (no memory, no time) and check its checkpoint fits.

    Catches wrong constructor arguments and mis-fitting weights before a long run starts.
    """
    from basicsr.archs import build_network
    from basicsr.utils import get_root_logger
    import logging

    get_root_logger().setLevel(logging.WARNING)
    try:
        with torch.device('meta'):
            net = build_network({'type': spec.arch, **spec.kwargs})
    except (TypeError, ValueError, KeyError) as err:
        raise BenchError(f"cannot build '{spec.label}' ({spec.arch} with {spec.kwargs}): {err}") from err
    except Exception:  # some archs compute buffers on construction that meta tensors cannot; the worker will tell
        return None
    if spec.checkpoint:
        from ecma_basicsr.engine.checkpoint import safe_load
        from ecma_basicsr.archs.state_dict_check import check_state_dict
        state = select_state_dict(safe_load(spec.checkpoint), spec.param_key, spec.checkpoint)
        try:
            check_state_dict(net, state, strict=True, name=spec.label, hint=getattr(net, 'checkpoint_hint', None))
        except RuntimeError as err:
            raise BenchError(str(err)) from err
    return sum(p.numel() for p in net.parameters())
