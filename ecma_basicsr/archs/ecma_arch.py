"""ECMA: Efficient Cascaded Multiscale Adaptive network (Zhou, Zhou, Ng, ECCV 2024).

Implements the paper's Sec. 3: the Local Adaptive Module (LAM, Eq. 1-3), Cascaded Multiscale
Learning (CML, Eq. 4-5) with kernel sizes (k_i, 5, 3), the fusion block (Sec. 3.3), the
learnable per-channel scale gamma, the U-Net of Sec. 3.1/3.4 (:class:`ECMA`, Table 1 variants
T/S/B) and the super-resolution variant (:class:`ECMASR`).

Where the paper is explicit, the code follows it; each reading of what it leaves open was checked
against Table 1 (``python -m ecma_basicsr.analysis.table1``: MACs by mmengine without the FFT
work, then with :func:`~ecma_basicsr.archs.fft_conv.fft_conv_macs` added):

* LAM (Eq. 1-3): W is a depthwise 3x3 conv on I (c/4 channels; m = 3, Sec. 3.2); W' is an n x n
  conv from the context to c/4 channels, grouped with one output channel per group (depthwise
  when the context has c/4 channels). This matches the paper's cost ((k^2 + 10)c + 3c^2)s^2:
  k^2 c + 9c + c (product) + 3c^2 (the 1x1 conv giving O'). Neither W nor W' has a bias: Eq. 2
  makes the adaptive output sigma * (W conv I), bilinear in (W, W'), and its equivalence with
  Conv_W(I) * Conv_W'(I') (Sec. 3.2) holds only without biases; with them the product branch
  would mix in the plain branches linearly. GroupNorm's affine still gives every channel of Q
  its own shift. Q = Cat(W(I) * W'(C), W(I), W'(C)); O = GroupNorm(Q) with one group per
  branch (3 groups); O' = Conv1x1(Q) with c/4 channels. The last LAM's O' has no consumer in
  Eq. 5, so it is not built (dead weight, and an unused parameter breaks DDP).
* CML (Eq. 4-5): Conv1x1 expands c to 9c/4 = I1, I1', I2, I2', I3, I3' with c/4, c/4, c/4, c/2,
  c/4, 3c/4 channels (Sec. 3.2: "c/4, c/2, 3c/4 for I'_i ... c/4 for all I_i"); LAM_2/LAM_3 get
  Cat(O'_prev, I'_i) as context, arranged by :func:`cascade_context` so that every group of the
  grouped W' holds its share of both (the paper's reason for the cascade, broad context from
  O'_{i-1} complemented by local context from I'_i, then holds for every output channel; a
  plain concatenation would give the first groups only O' and the others only I'). The output
  Conv1x1(Cat(O1, O2, O3)) maps 9c/4 back to c, scaled by gamma (Eq. 5 and [47]; zero-initialised).
* ECMA block = CML + a gated feed-forward part (channel LayerNorm, Conv1x1 c->2c, SimpleGate,
  Conv1x1 c->c, its own gamma), as in NAFNet which ECMA follows. CML alone is ~5c^2
  parameters; Table 1 needs ~8c^2 per block, which this feed-forward part supplies (3c^2).
* U-Net (Sec. 3.1, 3.4): 3x3 intro conv, four stages (width w, 2w, 4w, 8w); the decoder mirrors
  every stage including the deepest (ECMA-T has 9 + 9 blocks at 8w); fusion = 2x2 transposed
  conv, concat with the encoder feature, Conv1x1 (Sec. 3.3); 3x3 output conv plus the input as
  global residual. Downsampling is unspecified: a 3x3 conv to c/2 and PixelUnshuffle(2) (as
  Restormer [53]); a 2x2 stride-2 conv instead gave params +4.1/+4.6/+4.5% and MACs
  -3.8/-1.4/-3.4% for T/S/B, outside Table 1's tolerance. Inputs are padded (replicate) to a
  multiple of 8 inside and cropped back.
* Kernel sizes k_i = 32, 24, 16, 8 down the encoder, mirrored in the decoder (Sec. 3.4).
* ECMA-SR: see :class:`ECMASR` (kernels (32, 24) by the same rule).

Measured with ``python -m ecma_basicsr.analysis.table1`` (256x256 input; SR x4 to 1280x720)::

    variant     params  paper  MACs(noFFT)  MACs(+FFT)  paper
    ECMA-T     10.606M  10.5M       16.16G      16.28G  15.9G   params +1.0%  MACs +1.7% / +2.4%
    ECMA-S     32.126M  31.7M       50.36G      50.55G  48.4G   params +1.3%  MACs +4.0% / +4.4%
    ECMA-B     19.640M  19.5M       64.10G      64.52G  63.0G   params +0.7%  MACs +1.7% / +2.4%
    ECMA-SR     1.421M   1.4M       49.53G      50.28G  50.5G   params +1.5%  MACs -1.9% / -0.4%

Ablations of Tables 8 and 9 are constructor options (:data:`ABLATIONS`), aligned in size with
ECMA-T as Sec. 4.5 says the paper's were (:mod:`ecma_basicsr.analysis.ablations`). Table 9's "large
conv in spatial domain" row replaces k_i by the spatial kernel that costs what the FFT path costs
at the 256x256 training crop (:func:`same_cost_spatial_kernel`: 6, 6, 6, 5 for stages 1-4): the
paper keeps "computation cost at the same level", and a larger spatial kernel would break that;
its parameters then differ by -1.0% and MACs by -0.1%, so its blocks stay ECMA-T's.

This file is the architecture only. Inference-only rewrites of the same function (fewer
passes over memory on a CPU) are a separate step, :func:`ecma_basicsr.archs.fuse_for_inference`
(:mod:`ecma_basicsr.archs.ecma_fuse`), which returns a fused copy for validation, ``basicsr
bench`` and ``basicsr restore``.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY

from ecma_basicsr.archs.presets import Preset, resolve_preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin, CheckpointMismatchError, strip_prefix

from .arch_util import crop_to, pad_to_multiple
from .fft_conv import GroupedSameConv, LargeKernelConv, fft_conv_macs
from .nafnet_arch import LayerNorm2d

# Table 1: width and encoder blocks per stage of each variant (the decoder mirrors them).
VARIANTS = {
    'T': dict(width=32, enc_blocks=(1, 1, 2, 9)),
    'S': dict(width=64, enc_blocks=(1, 1, 1, 7)),
    'B': dict(width=64, enc_blocks=(2, 4, 4, 3)),
}
_TABLE1 = dict(source='ECMA Table 1', macs_input=(256, 256))
PRESETS = {
    'ECMA-T': Preset('ECMA', dict(variant='T'), params=10.5e6, macs=15.9e9, **_TABLE1),
    'ECMA-S': Preset('ECMA', dict(variant='S'), params=31.7e6, macs=48.4e9, **_TABLE1),
    'ECMA-B': Preset('ECMA', dict(variant='B'), params=19.5e6, macs=63.0e9, **_TABLE1),
    'ECMA-SR': Preset('ECMASR', dict(upscale=4), params=1.4e6, macs=50.5e9, macs_input=(720, 1280),
                      source='ECMA Table 1', scale=4),
    # the paper publishes x4 only; x2 / x3 differ from it in the upsampler's last conv
    'ECMA-SR-x2': Preset('ECMASR', dict(upscale=2), source='ECMA-SR at x2 (not in the paper)', scale=2),
    'ECMA-SR-x3': Preset('ECMASR', dict(upscale=3), source='ECMA-SR at x3 (not in the paper)', scale=3),
}

# How the blocks are wired, stored in checkpoints: weights trained with another wiring compute a
# different function here, so loading them is refused (ECMA.load_state_dict).
WIRING_CHANGES = {
    1: 'Cat(O\', I\') in channel order before the grouped W\'; W and W\' with biases',
    2: 'Cat(O\', I\') interleaved per group of W\' (cascade_context); W and W\' without biases (Eq. 2)',
}
WIRING = max(WIRING_CHANGES)
STAGE_KERNELS = (32, 24, 16, 8)
MEDIUM_KERNEL, SMALL_KERNEL = 5, 3
LAM_SIZES = ('large', 'medium', 'small')

# Table 8 / Table 9 rows as constructor options on top of ECMA-T. Blocks per stage are aligned so
# that each row is within 3% of ECMA-T's parameters and 5% of its MACs (Sec. 4.5; derived and
# printed by ``python -m ecma_basicsr.analysis.ablations``): among aligned configurations, the one
# that moves the fewest blocks from ECMA-T's (1, 1, 2, 9), at ECMA-T's width.
ABLATIONS = {
    'proposed': {},
    'table8_addition': dict(lam_combine='add'),
    'table8_concatenation': dict(lam_combine='concat', enc_blocks=(1, 1, 2, 10)),
    'table9_small_to_large': dict(lam_sizes=('small', 'medium', 'large'), enc_blocks=(2, 1, 1, 9)),
    'table9_no_cascade': dict(cascade=False, enc_blocks=(1, 1, 3, 9)),
    'table9_without_large': dict(lam_sizes=('medium', 'small'), enc_blocks=(1, 1, 3, 12)),
    'table9_without_medium': dict(lam_sizes=('large', 'small'), enc_blocks=(2, 1, 2, 12)),
    'table9_without_small': dict(lam_sizes=('large', 'medium'), enc_blocks=(2, 1, 2, 12)),
    'table9_three_large': dict(lam_sizes=('large', 'large', 'large'), enc_blocks=(1, 2, 2, 8)),
    'table9_three_medium': dict(lam_sizes=('medium', 'medium', 'medium')),
    'table9_three_small': dict(lam_sizes=('small', 'small', 'small')),
    'table9_large_spatial_same_cost': dict(large_domain='spatial_same_cost'),
}


def same_cost_spatial_kernel(k, h, w):
    """Kernel size whose spatial depthwise conv costs what the FFT conv of size k costs at h x w.

    Used for Table 9's "large conv in spatial domain" row: the paper keeps the computation at
    the FFT path's level, which forces a much smaller spatial kernel. At the 256x256 training
    crop this gives 6, 6, 6 and 5 for k = 32, 24, 16, 8 on stages 1-4 (h, w halve per stage).
    """
    return max(SMALL_KERNEL, round(math.sqrt(fft_conv_macs(1, 1, h, w, k) / (h * w))))


COMBINE_OPS = {'product': torch.mul, 'add': torch.add, 'concat': None}  # the first branch of Q, if any
COMBINES = {how: 2 + (op is not None) for how, op in COMBINE_OPS.items()}  # number of branches in Q


def combine_branches(a, b, how):
    """Branches of Q in Eq. 3: adaptive product (paper), or Table 8's addition / concatenation."""
    if how not in COMBINES:
        raise ValueError(f"lam_combine must be one of {tuple(COMBINES)}, got '{how}'.")
    op = COMBINE_OPS[how]
    return ([op(a, b)] if op else []) + [a, b]


class LAM(nn.Module):
    """Local Adaptive Module (Eq. 1-3).

    Args:
        channels (int): Channels of I (c/4 of the block).
        context_channels (int): Channels of the context I' (a multiple of ``channels``).
        kernel_size (int): n, the kernel of W' on the context.
        combine (str): 'product' (local adaptive conv), 'add' or 'concat' (Table 8).
        fft (bool): Run W' as :class:`LargeKernelConv` (FFT-capable) instead of nn.Conv2d.
        large_kernel_mode (str): 'auto', 'fft' or 'spatial' for the FFT-capable conv.
    """

    def __init__(self, channels, context_channels, kernel_size, combine='product', fft=False,
                 large_kernel_mode='auto', with_context_out=True):
        super().__init__()
        self.combine = combine
        # no biases: Eq. 2 is bilinear in (W, W'); see the module docstring
        self.conv_w = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        if fft:
            self.conv_ctx = LargeKernelConv(context_channels, channels, kernel_size, mode=large_kernel_mode, bias=False)
        else:
            self.conv_ctx = GroupedSameConv(context_channels, channels, kernel_size, bias=False)
        branches = COMBINES[combine]
        self.out_channels = branches * channels
        self.norm = nn.GroupNorm(branches, self.out_channels)
        self.to_context = nn.Conv2d(self.out_channels, channels, 1) if with_context_out else None

    def forward(self, x, context):
        q = torch.cat(combine_branches(self.conv_w(x), self.conv_ctx(context), self.combine), dim=1)
        return self.norm(q), (self.to_context(q) if self.to_context is not None else None)


class CML(nn.Module):
    """Cascaded Multiscale Learning (Eq. 4-5): 1x1 expand, cascaded LAMs, 1x1 reduce, gamma.

    LAM i (1-based) gets a raw context of i * c/4 channels; with ``cascade`` its context is
    Cat(O'_{i-1}, I'_i). With three LAMs the expansion is 9c/4 channels, as in the paper.
    """

    def __init__(self, channels, kernels, fft_flags, combine='product', cascade=True, large_kernel_mode='auto'):
        super().__init__()
        if channels % 4:
            raise ValueError(f'ECMA block width must be a multiple of 4, got {channels}.')
        q = channels // 4
        self.q, self.cascade = q, cascade
        n = len(kernels)
        self.splits = []
        lams = []
        for i, (k, fft) in enumerate(zip(kernels, fft_flags), start=1):
            self.splits += [q, i * q]
            ctx = i * q + (q if cascade and i > 1 else 0)
            feeds_next = cascade and i < n
            lams.append(LAM(q, ctx, k, combine, fft, large_kernel_mode, with_context_out=feeds_next))
        self.lams = nn.ModuleList(lams)
        self.expand = nn.Conv2d(channels, sum(self.splits), 1)
        self.reduce = nn.Conv2d(sum(lam.out_channels for lam in lams), channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        parts = torch.split(self.expand(x), self.splits, dim=1)
        outs, prev = [], None
        for i, lam in enumerate(self.lams):
            o, prev = lam(parts[2 * i], self._context(parts[2 * i + 1], prev))
            outs.append(o)
        return torch.addcmul(x, self.gamma, self.reduce(torch.cat(outs, dim=1)))  # x + gamma * (.), one pass

    def _context(self, raw, prev):
        return cascade_context(prev, raw) if self.cascade and prev is not None else raw


def cascade_context(prev, raw):
    """Cat(O'_{i-1}, I'_i) of Eq. 5, ordered so that every group of the grouped W' holds both.

    W' has one output channel per group (c/4 groups). With the two parts simply concatenated,
    the contiguous groups would split them: the first groups would see only O'_{i-1}, the rest
    only I'_i. Group j here holds channel j of O'_{i-1} followed by its share of I'_i (channels
    j * r ... j * r + r - 1, r = I'_i channels / c/4), so every output channel of LAM_i gets
    both the cascaded, broad context and the raw, local one (Sec. 3.2).
    """
    b, q, h, w = prev.shape
    return torch.cat([prev.unsqueeze(2), raw.view(b, q, -1, h, w)], dim=2).view(b, -1, h, w)


class GatedFFN(nn.Module):
    """Channel LayerNorm, Conv1x1 to 2 * expand * c, SimpleGate, Conv1x1 back; scaled residual."""

    def __init__(self, channels, expand=2):
        super().__init__()
        hidden = channels * expand
        self.norm = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden // 2, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        a, b = self.conv1(self.norm(x)).chunk(2, dim=1)
        return torch.addcmul(x, self.gamma, self.conv2(a * b))  # x + gamma * (.), one pass


class ECMABlock(nn.Module):
    """CML followed by the gated feed-forward part."""

    def __init__(self, channels, kernels, fft_flags, ffn_expand=2, **cml_kwargs):
        super().__init__()
        self.cml = CML(channels, kernels, fft_flags, **cml_kwargs)
        self.ffn = GatedFFN(channels, ffn_expand) if ffn_expand else nn.Identity()

    def forward(self, x):
        return self.ffn(self.cml(x))


def lam_kernels(lam_sizes, large_kernel, large_domain, stage_hw):
    """Kernel sizes and FFT flags of one block's LAMs, from size names ('large', 'medium', 'small')."""
    kernels, fft = [], []
    for name in lam_sizes:
        if name == 'large':
            if large_domain == 'frequency':
                kernels.append(large_kernel)
                fft.append(True)
            elif large_domain == 'spatial_same_cost':
                kernels.append(same_cost_spatial_kernel(large_kernel, *stage_hw))
                fft.append(False)
            else:
                raise ValueError(f"large_domain must be 'frequency' or 'spatial_same_cost', got '{large_domain}'.")
        elif name == 'medium':
            kernels.append(MEDIUM_KERNEL)
            fft.append(False)
        elif name == 'small':
            kernels.append(SMALL_KERNEL)
            fft.append(False)
        else:
            raise ValueError(f"lam_sizes entries must be among {LAM_SIZES}, got '{name}'.")
    return kernels, fft


class Stage(nn.Sequential):
    """``num_blocks`` ECMA blocks of one width and large kernel."""

    def __init__(self, channels, num_blocks, large_kernel, stage_hw, block_opts):
        opts = dict(block_opts)
        kernels, fft = lam_kernels(opts.pop('lam_sizes'), large_kernel, opts.pop('large_domain'), stage_hw)
        super().__init__(*[ECMABlock(channels, kernels, fft, **opts) for _ in range(num_blocks)])


class Downsample(nn.Sequential):
    """Halve H, W and double channels: 3x3 conv to c/2, then PixelUnshuffle(2) (as Restormer)."""

    def __init__(self, channels):
        super().__init__(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


class Fusion(nn.Module):
    """Fusion block (Sec. 3.3): D_i = Conv1x1(Cat(TConv(D_{i-1}), E_i))."""

    def __init__(self, channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels * 2, channels, 2, stride=2)
        self.fuse = nn.Conv2d(channels * 2, channels, 1)

    def forward(self, deep, skip):
        return self.fuse(torch.cat([self.up(deep), skip], dim=1))


class ECMAUNet(nn.Module):
    """The ECMA U-Net body on features: encoder stages, mirrored decoder, fusion blocks."""

    def __init__(self, width, enc_blocks, kernels, ref_size, block_opts):
        super().__init__()
        if len(kernels) != len(enc_blocks):
            raise ValueError(f'kernels {tuple(kernels)} must give one size per stage of enc_blocks '
                             f'{tuple(enc_blocks)}.')
        expands = per_level(block_opts['ffn_expand'], len(enc_blocks), 'ffn_expand')
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.decoders, self.fusions = nn.ModuleList(), nn.ModuleList()
        ch, hw = width, (ref_size, ref_size)
        for level, (n, k) in enumerate(zip(enc_blocks, kernels)):
            opts = dict(block_opts, ffn_expand=expands[level])
            self.encoders.append(Stage(ch, n, k, hw, opts))
            self.decoders.insert(0, Stage(ch, n, k, hw, opts))
            if level < len(enc_blocks) - 1:
                self.downs.append(Downsample(ch))
                self.fusions.insert(0, Fusion(ch))
                ch, hw = ch * 2, (hw[0] // 2, hw[1] // 2)
        self.multiple = 2 ** (len(enc_blocks) - 1)
        self.config = dict(width=width, enc_blocks=tuple(enc_blocks), kernels=tuple(kernels))

    def describe(self):
        return ', '.join(f'{k}={v}' for k, v in self.config.items())

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < len(self.downs):
                skips.append(x)
                x = self.downs[i](x)
        x = self.decoders[0](x)
        for fusion, dec in zip(self.fusions, self.decoders[1:]):
            x = dec(fusion(x, skips.pop()))
        return x


def per_level(value, levels, name):
    """``value`` for each of ``levels`` U-Net levels: one number for all, or a list with one per level."""
    if isinstance(value, (list, tuple)):
        if len(value) != levels:
            raise ValueError(f'{name} {tuple(value)} must give one value per level ({levels}), or one value for all.')
        return list(value)
    return [value] * levels


def block_options(ffn_expand, lam_combine, lam_sizes, cascade, large_domain, large_kernel_mode):
    if lam_combine not in COMBINES:
        raise ValueError(f"lam_combine must be one of {tuple(COMBINES)}, got '{lam_combine}'.")
    return dict(ffn_expand=ffn_expand, combine=lam_combine, lam_sizes=tuple(lam_sizes), cascade=cascade,
                large_domain=large_domain, large_kernel_mode=large_kernel_mode)


class _ECMANetwork(CheckedLoadMixin, nn.Module):
    """What ECMA and ECMASR share: image channels, the wiring version, input and checkpoint checks."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.in_channels, self.out_channels = in_ch, out_ch or in_ch
        # Identifies how the blocks are wired (see WIRING); stored in every checkpoint.
        self.register_buffer('wiring', torch.tensor(WIRING))

    def load_state_dict(self, state_dict, strict=True, assign=False):
        found = strip_prefix(state_dict).get('wiring')
        if found is None or int(found) != WIRING:
            version = 1 if found is None else int(found)
            raise CheckpointMismatchError(
                f'Checkpoint does not fit {self.config_summary()}: it was trained with ECMA wiring {version}, this '
                f'network has wiring {WIRING} ({WIRING_CHANGES[WIRING]}). The weights would compute a different '
                'function and cannot be converted: retrain with this version, or load them with the plugin version '
                'they were trained with.')
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_input(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            got = x.shape[1] if x.dim() == 4 else '?'
            raise ValueError(f'{type(self).__name__} expects a (B, {self.in_channels}, H, W) image tensor, got shape '
                             f'{tuple(x.shape)} ({got} channels). Set in_ch: {got} in network_g, or convert the '
                             'images (e.g. color: rgb / gray in the dataset options).')


@ARCH_REGISTRY.register()
class ECMA(_ECMANetwork):
    """ECMA U-Net for deblurring and denoising (Table 1: ECMA-T/S/B).

    Args:
        variant (str): 'T', 'S' or 'B' (case-insensitive); sets width and block counts (Table 1).
        in_ch (int): Image channels (3 for RGB, 1 for gray). out_ch defaults to in_ch.
        width (int): Overrides the variant's width (a multiple of 4).
        enc_blocks (list[int]): Overrides the blocks per encoder stage (decoder mirrors).
        kernels (list[int]): Large kernel k_i per stage; default 32, 24, 16, 8.
        ffn_expand (int | list[int]): Feed-forward expansion, for all levels or one per level
            (0 removes the feed-forward part).
        lam_combine (str): 'product' (paper), 'add' or 'concat' (Table 8 ablations).
        lam_sizes (list[str]): LAM order in a block; default ('large', 'medium', 'small').
            Table 9: ('small', 'medium', 'large'), a dropped entry, or three equal entries.
        cascade (bool): Feed O' of each LAM to the next (False: Table 9 "without cascading").
        large_domain (str): 'frequency' (paper) or 'spatial_same_cost' (Table 9 last row).
        large_kernel_mode (str): How the large kernel runs: 'auto', 'fft' or 'spatial'
            (identical results; 'auto' picks the faster one by measurement).
        ref_size (int): Training crop used to derive 'spatial_same_cost' kernels (256).
    """

    def __init__(self, variant='T', in_ch=3, out_ch=None, width=None, enc_blocks=None, kernels=None, ffn_expand=2,
                 lam_combine='product', lam_sizes=LAM_SIZES, cascade=True, large_domain='frequency',
                 large_kernel_mode='auto', ref_size=256):
        super().__init__(in_ch, out_ch)
        base = resolve_preset(VARIANTS, variant, 'ECMA variant')
        width = width or base['width']
        enc_blocks = tuple(enc_blocks or base['enc_blocks'])
        kernels = tuple(kernels or STAGE_KERNELS[:len(enc_blocks)])
        self.upscale = 1
        self.intro = nn.Conv2d(in_ch, width, 3, padding=1)
        opts = block_options(ffn_expand, lam_combine, lam_sizes, cascade, large_domain, large_kernel_mode)
        self.body = ECMAUNet(width, enc_blocks, kernels, ref_size, opts)
        self.ending = nn.Conv2d(width, self.out_channels, 3, padding=1)

    def config_summary(self):
        return f'ECMA(in_ch={self.in_channels}, out_ch={self.out_channels}, {self.body.describe()})'

    def forward(self, x):
        self.check_input(x)
        inp, size = pad_to_multiple(x, self.body.multiple, mode='replicate')
        out = self.ending(self.body(self.intro(inp)))
        if self.out_channels == self.in_channels:
            out = out + inp
        return crop_to(out, size)


@ARCH_REGISTRY.register()
class ECMASR(_ECMANetwork):
    """ECMA for super-resolution (Table 1 ECMA-SR, "10,1" blocks, width 64).

    Reading of "10,1": a two-level ECMA U-Net on the low-resolution features (10 blocks at
    width 64, 1 at width 128, decoder mirrored); then a 3x3 conv with a long skip, and a light
    pixel-shuffle upsampler (one 3x3 conv to out_ch * s^2, PixelShuffle) so that almost all
    computation stays at low resolution, as the 50.5 G MACs require (a classical two-step
    pixel-shuffle upsampler alone would cost ~45 G at 1280x720). The bicubic-upsampled input is
    added to the output so the network learns the residual.

    Kernels follow Sec. 3.4's rule, k_i = 32 and then 8 less per level: (32, 24). With the FFN of
    ECMA-T/S/B (expansion 2) on both levels that gives 1.470 M parameters (+5.0%), so the FFN
    width, which the paper leaves open, is 2 at the 64-channel level and 1 at the 128-channel
    level: 1.421 M (+1.5%) and 49.53 / 50.28 G MACs without / with the FFT (-0.4%). Alternatives
    counted with (32, 24) (params, MACs with FFT): a 1x1 body-tail conv 1.437 M / 49.10 G, no
    body-tail conv 1.433 M / 48.87 G, a 1x1 upsampler conv 1.445 M / 49.57 G, no FFN at the
    128-channel level 1.370 M / 49.57 G.

    Args:
        upscale (int): 2, 3 or 4.
        in_ch (int): Image channels. out_ch defaults to in_ch.
        width (int): Feature width (64).
        enc_blocks (list[int]): Blocks per level (10, 1).
        kernels (list[int]): Large kernel per level; default (32, 24).
        ffn_expand (int | list[int]): Feed-forward expansion, for all levels or per level; (2, 1).
        Other arguments as in :class:`ECMA`.
    """

    UPSCALES = (2, 3, 4)

    def __init__(self, upscale=4, in_ch=3, out_ch=None, width=64, enc_blocks=(10, 1), kernels=None, ffn_expand=(2, 1),
                 lam_combine='product', lam_sizes=LAM_SIZES, cascade=True, large_domain='frequency',
                 large_kernel_mode='auto', ref_size=64):
        super().__init__(in_ch, out_ch)
        if upscale not in self.UPSCALES:
            raise ValueError(f'Unknown ECMASR upscale {upscale}; valid choices: {self.UPSCALES}.')
        enc_blocks = tuple(enc_blocks)
        kernels = tuple(kernels or STAGE_KERNELS[:len(enc_blocks)])
        self.upscale = upscale
        self.head = nn.Conv2d(in_ch, width, 3, padding=1)
        opts = block_options(ffn_expand, lam_combine, lam_sizes, cascade, large_domain, large_kernel_mode)
        self.body = ECMAUNet(width, enc_blocks, kernels, ref_size, opts)
        self.body_tail = nn.Conv2d(width, width, 3, padding=1)
        self.upsample = nn.Sequential(
            nn.Conv2d(width, self.out_channels * upscale**2, 3, padding=1), nn.PixelShuffle(upscale))

    def config_summary(self):
        return f'ECMASR(upscale={self.upscale}, in_ch={self.in_channels}, {self.body.describe()})'

    def checkpoint_hint(self, state_dict):
        weight = state_dict.get('upsample.0.weight')
        if weight is None:
            return None
        scale = math.isqrt(weight.shape[0] // self.out_channels)
        if scale * scale * self.out_channels == weight.shape[0] and scale != self.upscale:
            return f'this checkpoint was trained for upscale={scale}; set network_g:upscale: {scale}.'
        return None

    def forward(self, x):
        self.check_input(x)
        inp, size = pad_to_multiple(x, self.body.multiple, mode='replicate')
        feat = self.head(inp)
        feat = feat + self.body_tail(self.body(feat))
        out = crop_to(self.upsample(feat), size, self.upscale)
        if self.out_channels == self.in_channels:
            out = out + F.interpolate(x, scale_factor=self.upscale, mode='bicubic', align_corners=False)
        return out
