"""NAFNet, a comparison baseline: "Simple Baselines for Image Restoration" (Chen, Chu, Zhang and Sun,
ECCV 2022).

The paper first builds a simple baseline (section "Build A Simple Baseline": U-Net architecture,
LayerNorm, GELU, channel attention) and then removes the nonlinear activations from it (section
"Nonlinear Activation Free Network": SimpleGate and simplified channel attention):

* ``NAFBlock``: LayerNorm -> 1x1 conv (x2 channels) -> 3x3 depthwise conv -> SimpleGate (split
  the channels in half, multiply) -> simplified channel attention (global average pool + 1x1 conv,
  multiplied in) -> 1x1 conv, added back with a learned per-channel scale ``beta``; then a gated
  feed-forward part (LayerNorm -> 1x1 conv x2 -> SimpleGate -> 1x1 conv) with scale ``gamma``.
  Both scales start at zero, so every block starts as the identity.
* ``NAFNet`` (the single-stage U-Net of the baseline section): 3x3 intro conv, encoder stages
  separated by 2x2 stride-2 convs that double the width, middle blocks, decoder stages with 1x1
  conv + PixelShuffle upsampling and additive skips, a 3x3 ending conv and a global residual.
* TLC (test-time local converter; Chu et al., "Improving Image Restoration by Revisiting Global
  Information Aggregation", ECCV 2022), used by NAFNet for its GoPro / REDS numbers: the global
  average pool in SCA is replaced by an average over a local window as large as 1.5x the training
  patch (scaled to each U-Net level), so full-resolution test images see the same statistics
  range as the 256 x 256 training crops.
* ``NAFNetSR``: single-image super-resolution from NAFNet blocks (Chu, Chen and Yu, "NAFSSR: Stereo Image
  Super-Resolution Using NAFNet", CVPRW 2022, Sec. 3): NAFSSR without its stereo cross-attention (SCAM),
  i.e. a 3x3 intro conv, NAFBlocks at the low-resolution input size (with NAFSSR's stochastic depth), a
  3x3 conv + PixelShuffle upsampler and a bilinearly upsampled copy of the input added. No preset (the
  published NAFSSR numbers are stereo models).

Presets (:data:`PRESETS`, ``variant``) reproduce the published configurations; parameter counts
printed by ``python -m ecma_basicsr.presets --arch NAFNet``:

=================  =====  ==============  ======  ============  ==========  =========
variant            width  enc            middle  dec           ours        published
=================  =====  ==============  ======  ============  ==========  =========
GoPro-width32      32     1,1,1,28        1       1,1,1,1       17.11 M     17.11 M
GoPro-width64      64     1,1,1,28        1       1,1,1,1       67.89 M     67.89 M
REDS-width64       64     1,1,1,28        1       1,1,1,1       67.89 M     67.89 M
SIDD-width32       32     2,2,4,8         12      2,2,2,2       29.16 M     29.16 M
SIDD-width64       64     2,2,4,8         12      2,2,2,2       115.98 M    115.98 M
=================  =====  ==============  ======  ============  ==========  =========

Compatibility with the authors' release (github.com/megvii-research/NAFNet, read for facts only; checked
numerically against fixtures made with their code, ``tests/test_golden.py``):

* State-dict keys are theirs (``intro``, ``encoders.i.j.conv1``, ``sca.1``, ``beta`` ...), so their
  published ``.pth`` files load with ``param_key_g: params``.
* ``NAFNet(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)`` and
  ``NAFNetLocal(..., train_size=(N, C, H, W), fast_imp=False)`` take their arguments, so the
  ``network_g`` section of their option files builds the same network.
* TLC windows follow their conversion pass: it runs the network once on a ``train_size`` input, which
  the forward first zero-pads to a multiple of 16, and sets the window of a pooling layer whose
  feature map is h_l pixels high to ``h_l * int(1.5 H) // H`` (H the unpadded training height, same
  for W). For H a multiple of 16 that is 1.5 H / 2**level; for other H it is larger.
* ``fast_imp=True`` is their approximate pooling: window sums on a grid strided by the largest of
  5, 4, 3, 2, 1 that divides the map (capped at ``5 * h_l // H``), each window shortened to a multiple
  of the stride, nearest upsampling back, replicate padding at the borders. It is not the exact
  TLC; it is provided because their option files may set it.
"""
import math
import re

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.arch_util import crop_to, pad_to_multiple
from ecma_basicsr.archs.presets import Preset, resolve_preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['LayerNorm2d', 'SimpleGate', 'LocalAvgPool2d', 'NAFBlock', 'NAFNet', 'NAFNetLocal', 'NAFNetSR', 'PRESETS',
           'tlc_windows']

_GOPRO = dict(enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1])
_SIDD = dict(enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12, dec_blk_nums=[2, 2, 2, 2])
_SOURCE = 'NAFNet (Chen et al., ECCV 2022), published models'
PRESETS = {
    'NAFNet-GoPro-width32': Preset('NAFNet', dict(width=32, **_GOPRO), params=17.11e6, source=_SOURCE),
    'NAFNet-GoPro-width64': Preset('NAFNet', dict(width=64, **_GOPRO), params=67.89e6, source=_SOURCE),
    'NAFNet-REDS-width64': Preset('NAFNet', dict(width=64, **_GOPRO), params=67.89e6, source=_SOURCE),
    'NAFNet-SIDD-width32': Preset('NAFNet', dict(width=32, **_SIDD), params=29.16e6, source=_SOURCE),
    'NAFNet-SIDD-width64': Preset('NAFNet', dict(width=64, **_SIDD), params=115.98e6, source=_SOURCE),
}
# the authors' pooling strides for fast_imp, largest first
_FAST_STRIDES = (5, 4, 3, 2, 1)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an ``(N, C, H, W)`` map, independently per pixel.

    Args:
        channels (int): Number of channels C (size of the affine weight and bias).
        eps (float): Added to the variance. 1e-6 as in NAFNet.
    """

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """SimpleGate (NAFNet, "Nonlinear Activation Free Network"): multiply the two channel halves.

    It replaces GELU: a gated linear unit without the nonlinearity, which the paper shows is enough
    because the product itself is nonlinear.
    """

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


class LocalAvgPool2d(nn.Module):
    """Average pooling that is global by default and local (TLC) when given a window.

    With ``kernel_size=None`` (or a window at least as large as the map) this is the global average
    pool of SCA and returns ``(N, C, 1, 1)``. Otherwise every pixel gets the mean of a
    ``kernel_size`` window: the window is kept inside the image, so the valid (stride-1) means are
    computed with an integral image and the border rows / columns repeat the nearest valid mean
    (TLC's convention). The output then has the input's spatial size.

    Args:
        kernel_size (int | tuple[int, int] | None): Local window (H, W), or None for global.
        fast (bool): The authors' approximation (``fast_imp``, see the module docstring) instead of
            the exact window means.
        max_stride (tuple[int, int]): Cap on the approximation's sampling stride per axis (the
            authors' ``5 * h_l // H``, computed by :func:`tlc_windows`).
    """

    def __init__(self, kernel_size=None, fast=False, max_stride=(5, 5)):
        super().__init__()
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size, kernel_size)
        self.kernel_size = None if kernel_size is None else tuple(int(k) for k in kernel_size)
        self.fast = bool(fast)
        self.max_stride = tuple(int(r) for r in max_stride)

    def forward(self, x):
        h, w = x.shape[-2:]
        if self.kernel_size is None or (self.kernel_size[0] >= h and self.kernel_size[1] >= w):
            return x.mean(dim=(2, 3), keepdim=True)
        mean = self._strided_means(x) if self.fast else None
        if mean is None:
            mean = self._exact_means(x)
        vh, vw = mean.shape[-2:]
        pad = ((w - vw) // 2, (w - vw + 1) // 2, (h - vh) // 2, (h - vh + 1) // 2)
        return nn.functional.pad(mean, pad, mode='replicate')

    def _exact_means(self, x):
        h, w = x.shape[-2:]
        kh, kw = min(self.kernel_size[0], h), min(self.kernel_size[1], w)
        # Integral image in float64: at 720x1280 a float32 running sum loses ~3 digits.
        s = x.double().cumsum(2).cumsum(3)
        s = nn.functional.pad(s, (1, 0, 1, 0))
        mean = (s[..., kh:, kw:] - s[..., :-kh, kw:] - s[..., kh:, :-kw] + s[..., :-kh, :-kw]) / (kh * kw)
        return mean.to(x.dtype)

    def _strided_means(self, x):
        """The authors' ``fast_imp``: window means on a strided grid, repeated back; None if degenerate."""
        h, w = x.shape[-2:]
        rh = min(self.max_stride[0], next(r for r in _FAST_STRIDES if h % r == 0))
        rw = min(self.max_stride[1], next(r for r in _FAST_STRIDES if w % r == 0))
        s = x[..., ::rh, ::rw].double().cumsum(2).cumsum(3)
        sh, sw = s.shape[-2:]
        kh, kw = min(sh - 1, self.kernel_size[0] // rh), min(sw - 1, self.kernel_size[1] // rw)
        if kh < 1 or kw < 1:
            # The authors' code divides by zero here (a map a single stride high or wide).
            return None
        # No zero row / column in front (the authors' indexing): a window sums the kh samples after
        # its first one, so there are sh - kh windows per column, not sh - kh + 1.
        mean = (s[..., kh:, kw:] - s[..., :-kh, kw:] - s[..., kh:, :-kw] + s[..., :-kh, :-kw]) / (kh * kw)
        mean = mean.repeat_interleave(rh, dim=2).repeat_interleave(rw, dim=3)  # nearest upsampling
        return mean.to(x.dtype)

    def extra_repr(self):
        return f'kernel_size={self.kernel_size}, fast={self.fast}'


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block (NAFNet, "Nonlinear Activation Free Network").

    Args:
        c (int): Channels.
        dw_expand (int): Expansion of the 1x1 conv before the depthwise conv (2 in the paper).
        ffn_expand (int): Expansion of the feed-forward part (2 in the paper).
        drop_out_rate (float): Dropout on both residual branches (0 in all published configs).
        tlc_kernel (int | tuple | None): Local window for SCA's pooling (TLC); None = global.
    """

    def __init__(self, c, dw_expand=2, ffn_expand=2, drop_out_rate=0.0, tlc_kernel=None):
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        # Simplified channel attention: pooled statistics -> 1x1 conv, no ReLU / sigmoid.
        self.sca = nn.Sequential(LocalAvgPool2d(tlc_kernel), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        # Zero-initialised branch scales: each block starts as the identity, which is what lets
        # the 36-block GoPro models train without warm-up tricks.
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def set_tlc_kernel(self, kernel_size, fast=False, max_stride=(5, 5)):
        """Switch SCA's pooling between global (None) and a local TLC window (see LocalAvgPool2d)."""
        self.sca[0] = LocalAvgPool2d(kernel_size, fast=fast, max_stride=max_stride)

    def forward(self, inp):
        x = self.conv2(self.conv1(self.norm1(inp)))
        x = self.sg(x)
        x = x * self.sca[1](self.sca[0](x))
        x = self.dropout1(self.conv3(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma


def tlc_windows(train_size, level, multiple, ratio=1.5):
    """TLC window and fast-pooling stride cap at U-Net ``level``, as the authors' conversion sets them.

    Args:
        train_size (int | tuple): Training patch: H = W, ``(H, W)`` or ``(N, C, H, W)``.
        level (int): 0 at full resolution, one more per 2x downsampling.
        multiple (int): The network zero-pads its input to this multiple (2**levels).
        ratio (float): Window / training patch (1.5).

    Returns:
        tuple: ``((kh, kw), (max_stride_h, max_stride_w))``.
    """
    size = (train_size, train_size) if isinstance(train_size, int) else tuple(train_size)[-2:]
    windows, strides = [], []
    for t in size:
        t = int(t)
        feat = -(-t // multiple) * multiple // 2 ** level  # map size in the authors' conversion pass
        windows.append(feat * int(t * ratio) // t)
        strides.append(max(1, _FAST_STRIDES[0] * feat // t))
    return tuple(windows), tuple(strides)


def set_tlc_windows(levels, enabled, train_size, multiple, ratio, fast):
    """Give every NAFBlock of ``levels`` (``[(blocks, level)]``) its TLC pooling, or global pooling."""
    for blocks, level in levels:
        window, stride = tlc_windows(train_size, level, multiple, ratio)
        for block in blocks:
            if isinstance(block, NAFBlock):
                block.set_tlc_kernel(window if enabled else None, fast, stride)


class TLCMixin:
    """``set_tlc`` for a network whose ``tlc_levels()`` lists its pooling NAFBlocks (NAFNet, M3SNet).

    TLC has no parameters, so a trained model (and the plain and ``*Local`` classes) share checkpoints
    and can switch at test time.
    """

    def set_tlc(self, enabled=True, train_size=None, ratio=None, fast_imp=None):
        """Turn TLC on or off; the given settings replace the constructor's."""
        if train_size is not None:
            self.train_size = train_size
        if ratio is not None:
            self.tlc_ratio = ratio
        if fast_imp is not None:
            self.fast_imp = bool(fast_imp)
        self.tlc = bool(enabled)
        set_tlc_windows(self.tlc_levels(), self.tlc, self.train_size, self.padder_size, self.tlc_ratio,
                        self.fast_imp)
        return self


@ARCH_REGISTRY.register()
class NAFNet(TLCMixin, CheckedLoadMixin, nn.Module):
    """NAFNet U-Net with optional TLC.

    Any input size works: the input is zero-padded to a multiple of ``2 ** len(enc_blk_nums)``
    and the output cropped back.

    Args:
        img_channel (int): Input / output channels.
        width (int): Channels of the first stage (doubled at every down-sampling). Default 16.
        middle_blk_num (int): Blocks at the lowest resolution.
        enc_blk_nums (list[int]): Blocks per encoder stage.
        dec_blk_nums (list[int]): Blocks per decoder stage (deepest first).
        dw_expand (int): NAFBlock depthwise expansion.
        ffn_expand (int): NAFBlock feed-forward expansion.
        drop_out_rate (float): NAFBlock dropout.
        variant (str): A preset: ``GoPro-width32``, ``GoPro-width64``, ``REDS-width64``,
            ``SIDD-width32``, ``SIDD-width64`` (case-insensitive; the full names of :data:`PRESETS`,
            e.g. ``NAFNet-GoPro-width32``, work too). Explicit keyword arguments override it.
        tlc (bool): Use TLC's local statistics in every SCA (the GoPro / REDS test setting).
        train_size (int | tuple): Training patch size TLC refers to (256 for NAFNet); an
            ``(N, C, H, W)`` tuple as in the authors' option files is accepted too.
        tlc_ratio (float): TLC window / training patch (1.5 in the authors' code).
        fast_imp (bool): With TLC, the authors' approximate pooling instead of the exact one.
    """

    def __init__(self, img_channel=3, width=None, middle_blk_num=None, enc_blk_nums=None, dec_blk_nums=None,
                 dw_expand=2, ffn_expand=2, drop_out_rate=0.0, variant=None, tlc=False, train_size=256,
                 tlc_ratio=1.5, fast_imp=False):
        super().__init__()
        cfg = dict(width=16, middle_blk_num=1, enc_blk_nums=[], dec_blk_nums=[])
        if variant is not None:
            cfg.update(resolve_preset(PRESETS, variant, 'NAFNet variant', prefix='NAFNet-').kwargs)
        for k, v in dict(width=width, middle_blk_num=middle_blk_num, enc_blk_nums=enc_blk_nums,
                         dec_blk_nums=dec_blk_nums).items():
            if v is not None:
                cfg[k] = v
        if len(cfg['enc_blk_nums']) != len(cfg['dec_blk_nums']):
            raise ValueError(f"enc_blk_nums {cfg['enc_blk_nums']} and dec_blk_nums {cfg['dec_blk_nums']} "
                             'must have the same length (one decoder stage per encoder stage).')
        self.img_channel = self.in_channels = img_channel
        self.upscale = 1
        self.width = cfg['width']
        self.enc_blk_nums = list(cfg['enc_blk_nums'])
        self.dec_blk_nums = list(cfg['dec_blk_nums'])
        self.middle_blk_num = cfg['middle_blk_num']
        self.train_size = train_size
        self.tlc_ratio = tlc_ratio
        self.fast_imp = bool(fast_imp)

        def stage(chan, n):
            return nn.Sequential(*[NAFBlock(chan, dw_expand, ffn_expand, drop_out_rate) for _ in range(n)])

        chan = self.width
        self.intro = nn.Conv2d(img_channel, chan, 3, padding=1)
        self.ending = nn.Conv2d(chan, img_channel, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for n in self.enc_blk_nums:
            self.encoders.append(stage(chan, n))
            self.downs.append(nn.Conv2d(chan, chan * 2, 2, stride=2))
            chan *= 2
        self.middle_blks = stage(chan, self.middle_blk_num)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in self.dec_blk_nums:
            # 1x1 conv to 2x channels, then PixelShuffle(2) -> half the channels at twice the size.
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(stage(chan, n))
        self.padder_size = 2 ** len(self.encoders)
        self.tlc = False
        self.set_tlc(tlc)

    def tlc_levels(self):
        """``[(blocks, level)]`` for every stage whose NAFBlocks pool (level 0 = full resolution)."""
        depth = len(self.encoders)
        levels = [(blocks, i) for i, blocks in enumerate(self.encoders)]
        levels.append((self.middle_blks, depth))
        levels += [(blocks, depth - 1 - j) for j, blocks in enumerate(self.decoders)]
        return levels

    def forward(self, inp):
        x_in, size = pad_to_multiple(inp, self.padder_size, mode='constant')
        x = self.intro(x_in)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        x = self.ending(x) + x_in
        return crop_to(x, size)

    def config_summary(self):
        return (f'NAFNet(img_channel={self.img_channel}, width={self.width}, enc_blk_nums={self.enc_blk_nums}, '
                f'middle_blk_num={self.middle_blk_num}, dec_blk_nums={self.dec_blk_nums})')

    def checkpoint_hint(self, state_dict):
        """Read width and block counts off the checkpoint's keys and shapes."""
        intro = state_dict.get('intro.weight')
        if intro is None:
            return None

        def count(prefix):
            stages = {}
            for k in state_dict:
                m = re.match(rf'{prefix}\.(\d+)\.(\d+)\.beta$', k)
                if m:
                    stages[int(m.group(1))] = max(stages.get(int(m.group(1)), 0), int(m.group(2)) + 1)
            return [stages.get(i, 0) for i in range(len(stages))]

        middle = sum(1 for k in state_dict if re.match(r'middle_blks\.\d+\.beta$', k))
        return (f'the checkpoint looks like img_channel={intro.shape[1]}, width={intro.shape[0]}, '
                f'enc_blk_nums={count("encoders")}, middle_blk_num={middle}, dec_blk_nums={count("decoders")}.')



@ARCH_REGISTRY.register()
class NAFNetLocal(NAFNet):
    """``NAFNet`` with TLC switched on: the authors' class for their GoPro / REDS tests.

    Takes their arguments (``train_size=(N, C, H, W)``, default 256 x 256, and ``fast_imp``) besides
    ours; ``NAFNetLocal`` and ``NAFNet`` share the state dict (TLC has no parameters).
    """

    def __init__(self, *args, tlc=True, **kwargs):
        super().__init__(*args, tlc=tlc, **kwargs)


@ARCH_REGISTRY.register()
class NAFNetSR(CheckedLoadMixin, nn.Module):
    """Single-image NAFSSR: NAFNet blocks at low resolution, a PixelShuffle upsampler, a bilinear skip.

    From Chu, Chen and Yu, "NAFSSR: Stereo Image Super-Resolution Using NAFNet" (CVPRW 2022), Sec. 3:
    NAFSSR is this network run on both views of a stereo pair with a stereo cross-attention module
    (SCAM) after every block. Without SCAM (the authors' ``NAFNetSR`` with ``dual=False``) it is plain
    single-image SR made of NAFNet blocks, all at the low-resolution input size::

        out = PixelShuffle(conv3x3(body(intro(x)))) + bilinear_upsample(x)

    ``intro`` is a 3x3 conv ``img_channel -> width``, ``body`` ``num_blks`` :class:`NAFBlock` s and the
    upsampler a 3x3 conv ``width -> img_channel * up_scale**2`` before ``PixelShuffle(up_scale)``. The
    global skip is bilinear with ``align_corners=False`` (``F.interpolate``'s default, which the
    authors' code leaves unset).

    Stochastic depth as in NAFSSR's training: while training, each block is skipped with probability
    ``drop_path_rate`` (one draw per block and batch, the same rate for every block), and a kept block's
    residual ``block(x) - x`` is scaled by ``1 / (1 - drop_path_rate)``; in eval mode every block runs
    unscaled. The paper's models use 0.1 (T, S) to 0.3 (L); the default here is 0.

    No preset: the paper's published numbers are for the stereo models (with SCAM), not this network.

    State-dict keys are ``intro``, ``body.i.<NAFBlock keys>`` and ``up.0``; a checkpoint of the authors'
    ``NAFNetSR`` (keys ``body.i.module.blk.*``) is translated on load (:meth:`map_checkpoint`).

    Args:
        up_scale (int): Upscale factor.
        width (int): Feature channels of every block.
        num_blks (int): Number of NAF blocks.
        img_channel (int): Input / output channels.
        drop_path_rate (float): Stochastic depth rate per block (0 <= rate < 1).
        drop_out_rate (float): Dropout inside each NAFBlock.
    """

    def __init__(self, up_scale=4, width=48, num_blks=16, img_channel=3, drop_path_rate=0., drop_out_rate=0.):
        super().__init__()
        if int(up_scale) != up_scale or up_scale < 1:
            raise ValueError(f'NAFNetSR up_scale must be a positive integer, got {up_scale!r}.')
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'NAFNetSR drop_path_rate must be in [0, 1), got {drop_path_rate!r}.')
        self.up_scale = self.upscale = int(up_scale)
        self.img_channel = self.in_channels = img_channel
        self.width = width
        self.num_blks = num_blks
        self.drop_path_rate = float(drop_path_rate)
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.body = nn.Sequential(*[NAFBlock(width, drop_out_rate=drop_out_rate) for _ in range(num_blks)])
        self.up = nn.Sequential(nn.Conv2d(width, img_channel * self.upscale ** 2, 3, padding=1),
                                nn.PixelShuffle(self.upscale))

    def run_body(self, feat):
        """The blocks, with NAFSSR's stochastic depth while training."""
        rate = self.drop_path_rate if self.training else 0.
        for blk in self.body:
            if rate == 0.:
                feat = blk(feat)
            elif torch.rand(()).item() >= rate:
                feat = feat + (blk(feat) - feat) / (1. - rate)
        return feat

    def forward(self, x):
        skip = nn.functional.interpolate(x, scale_factor=self.upscale, mode='bilinear', align_corners=False)
        return self.up(self.run_body(self.intro(x))) + skip

    def config_summary(self):
        return (f'NAFNetSR(up_scale={self.upscale}, width={self.width}, num_blks={self.num_blks}, '
                f'img_channel={self.img_channel})')

    def map_checkpoint(self, state_dict):
        """The authors' ``body.i.module.blk.*`` keys (DropPath and NAFBlockSR wrappers) -> ``body.i.*``."""
        pattern = re.compile(r'^((?:module\.)?body\.\d+\.)module\.blk\.')
        if not any(pattern.match(k) for k in state_dict):
            return state_dict
        return type(state_dict)((pattern.sub(r'\1', k), v) for k, v in state_dict.items())

    def checkpoint_hint(self, state_dict):
        """Name a stereo checkpoint (SCAM keys) and the configuration the shapes suggest."""
        if any('.fusion.' in k for k in state_dict):
            return ('the checkpoint has stereo cross-attention (SCAM, ".fusion.") keys: it is a stereo NAFSSR '
                    'model, which NAFNetSR (single-image, no SCAM) cannot load.')
        intro, up = state_dict.get('intro.weight'), state_dict.get('up.0.weight')
        if intro is None or up is None:
            return None
        scale = math.isqrt(up.shape[0] // intro.shape[1])
        blocks = sum(1 for k in state_dict if re.match(r'body\.\d+\.beta$', k))
        return (f'the checkpoint looks like up_scale={scale}, width={intro.shape[0]}, num_blks={blocks}, '
                f'img_channel={intro.shape[1]}.')
