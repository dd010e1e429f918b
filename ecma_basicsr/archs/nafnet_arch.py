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

Presets (``variant``) reproduce the published configurations; parameter counts printed by
``python -c "from ecma_basicsr.archs.nafnet_arch import print_presets; print_presets()"``:

=================  =====  ==============  ======  ============  ==========  =========
variant            width  enc            middle  dec           ours        published
=================  =====  ==============  ======  ============  ==========  =========
GoPro-width32      32     1,1,1,28        1       1,1,1,1       17.11 M     17.11 M
GoPro-width64      64     1,1,1,28        1       1,1,1,1       67.89 M     67.89 M
REDS-width64       64     1,1,1,28        1       1,1,1,1       67.89 M     67.89 M
SIDD-width32       32     2,2,4,8         12      2,2,2,2       29.16 M     29.16 M
SIDD-width64       64     2,2,4,8         12      2,2,2,2       115.98 M    115.98 M
=================  =====  ==============  ======  ============  ==========  =========

State-dict keys follow the authors' release (``intro``, ``encoders.i.j.conv1``, ``sca.1``, ``beta``
...), so their published ``.pth`` files load with ``param_key_g: params``.
"""
import re

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.arch_util import crop_to, pad_to_multiple
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['LayerNorm2d', 'SimpleGate', 'LocalAvgPool2d', 'NAFBlock', 'NAFNet', 'NAFNetLocal', 'NAFNET_VARIANTS']

NAFNET_VARIANTS = {
    'gopro-width32': dict(width=32, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1]),
    'gopro-width64': dict(width=64, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1]),
    'reds-width64': dict(width=64, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1]),
    'sidd-width32': dict(width=32, enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12, dec_blk_nums=[2, 2, 2, 2]),
    'sidd-width64': dict(width=64, enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12, dec_blk_nums=[2, 2, 2, 2]),
}


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
    """

    def __init__(self, kernel_size=None):
        super().__init__()
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size, kernel_size)
        self.kernel_size = None if kernel_size is None else tuple(int(k) for k in kernel_size)

    def forward(self, x):
        h, w = x.shape[-2:]
        if self.kernel_size is None or (self.kernel_size[0] >= h and self.kernel_size[1] >= w):
            return x.mean(dim=(2, 3), keepdim=True)
        kh, kw = min(self.kernel_size[0], h), min(self.kernel_size[1], w)
        # Integral image in float64: at 720x1280 a float32 running sum loses ~3 digits.
        s = x.double().cumsum(2).cumsum(3)
        s = nn.functional.pad(s, (1, 0, 1, 0))
        mean = (s[..., kh:, kw:] - s[..., :-kh, kw:] - s[..., kh:, :-kw] + s[..., :-kh, :-kw]) / (kh * kw)
        vh, vw = mean.shape[-2:]
        pad = ((w - vw) // 2, (w - vw + 1) // 2, (h - vh) // 2, (h - vh + 1) // 2)
        return nn.functional.pad(mean.to(x.dtype), pad, mode='replicate')

    def extra_repr(self):
        return f'kernel_size={self.kernel_size}'


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

    def set_tlc_kernel(self, kernel_size):
        """Switch SCA's pooling between global (None) and a local TLC window."""
        self.sca[0] = LocalAvgPool2d(kernel_size)

    def forward(self, inp):
        x = self.conv2(self.conv1(self.norm1(inp)))
        x = self.sg(x)
        x = x * self.sca[1](self.sca[0](x))
        x = self.dropout1(self.conv3(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma


def _tlc_window(train_size, ratio, level):
    """TLC window at U-Net ``level``: ``ratio`` x the training patch, divided by 2**level."""
    th, tw = (train_size, train_size) if isinstance(train_size, int) else tuple(train_size)[-2:]
    return int(th * ratio) // 2 ** level, int(tw * ratio) // 2 ** level


@ARCH_REGISTRY.register()
class NAFNet(CheckedLoadMixin, nn.Module):
    """NAFNet U-Net with optional TLC.

    Any input size works: the input is zero-padded to a multiple of ``2 ** len(enc_blk_nums)``
    and the output cropped back.

    Args:
        img_channel (int): Input / output channels.
        width (int): Channels of the first stage (doubled at every down-sampling).
        middle_blk_num (int): Blocks at the lowest resolution.
        enc_blk_nums (list[int]): Blocks per encoder stage.
        dec_blk_nums (list[int]): Blocks per decoder stage (deepest first).
        dw_expand (int): NAFBlock depthwise expansion.
        ffn_expand (int): NAFBlock feed-forward expansion.
        drop_out_rate (float): NAFBlock dropout.
        variant (str): One of ``GoPro-width32``, ``GoPro-width64``, ``REDS-width64``,
            ``SIDD-width32``, ``SIDD-width64`` (case-insensitive). Sets width and block counts;
            explicit keyword arguments override it.
        tlc (bool): Use TLC's local statistics in every SCA (the GoPro / REDS test setting).
        train_size (int | tuple): Training patch size TLC refers to (256 for NAFNet); an
            ``(N, C, H, W)`` tuple as in the authors' option files is accepted too.
        tlc_ratio (float): TLC window / training patch (1.5 in the authors' code).
    """

    def __init__(self, img_channel=3, width=None, middle_blk_num=None, enc_blk_nums=None, dec_blk_nums=None,
                 dw_expand=2, ffn_expand=2, drop_out_rate=0.0, variant=None, tlc=False, train_size=256,
                 tlc_ratio=1.5):
        super().__init__()
        cfg = dict(width=16, middle_blk_num=1, enc_blk_nums=[], dec_blk_nums=[])
        if variant is not None:
            key = variant.lower()
            if key not in NAFNET_VARIANTS:
                raise ValueError(f"Unknown NAFNet variant '{variant}'. Choose one of: "
                                 f"GoPro-width32, GoPro-width64, REDS-width64, SIDD-width32, SIDD-width64.")
            cfg.update(NAFNET_VARIANTS[key])
        for k, v in dict(width=width, middle_blk_num=middle_blk_num, enc_blk_nums=enc_blk_nums,
                         dec_blk_nums=dec_blk_nums).items():
            if v is not None:
                cfg[k] = v
        if len(cfg['enc_blk_nums']) != len(cfg['dec_blk_nums']):
            raise ValueError(f"enc_blk_nums {cfg['enc_blk_nums']} and dec_blk_nums {cfg['dec_blk_nums']} "
                             'must have the same length (one decoder stage per encoder stage).')
        self.img_channel = img_channel
        self.width = cfg['width']
        self.enc_blk_nums = list(cfg['enc_blk_nums'])
        self.dec_blk_nums = list(cfg['dec_blk_nums'])
        self.middle_blk_num = cfg['middle_blk_num']
        self.train_size = train_size
        self.tlc_ratio = tlc_ratio

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

    def set_tlc(self, enabled=True, train_size=None, ratio=None):
        """Turn TLC on or off (it has no parameters, so a trained model can switch at test time)."""
        if train_size is not None:
            self.train_size = train_size
        if ratio is not None:
            self.tlc_ratio = ratio
        self.tlc = bool(enabled)
        depth = len(self.encoders)
        levels = [(blocks, i) for i, blocks in enumerate(self.encoders)]
        levels.append((self.middle_blks, depth))
        levels += [(blocks, depth - 1 - j) for j, blocks in enumerate(self.decoders)]
        for blocks, level in levels:
            window = _tlc_window(self.train_size, self.tlc_ratio, level) if self.tlc else None
            for block in blocks:
                block.set_tlc_kernel(window)
        return self

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
    """``NAFNet`` with TLC switched on: the name the authors' GoPro / REDS test options use."""

    def __init__(self, *args, tlc=True, **kwargs):
        kwargs.pop('fast_imp', None)  # authors' option: an approximate pooling; we always pool exactly
        super().__init__(*args, tlc=tlc, **kwargs)


def print_presets():
    """Print the parameter count of every preset (the table in the module docstring)."""
    for name in ('GoPro-width32', 'GoPro-width64', 'REDS-width64', 'SIDD-width32', 'SIDD-width64'):
        net = NAFNet(variant=name)
        print(f'NAFNet {name:15s} {sum(p.numel() for p in net.parameters()) / 1e6:8.2f} M')
