"""Hi-IR, a transformer baseline: "Hierarchical Information Flow for Generalized Efficient Image
Restoration" (Li, Ren, Liang, Ranjan, Liu, Sebe, Yang and Benini, arXiv 2411.18588).

There is no public code; this module is written from the paper. Its parts (section numbers are
the paper's):

* L1 information flow attention (Sec. 3.2, Fig. 3(a)): multi-head self-attention inside
  non-overlapping p x p patches.
* L2 information flow attention (Sec. 3.2): the L1 output is regrouped by a reshape and a
  permutation so that each L2 window holds one token from every p x p patch of a larger P x P
  region (the tokens that share an in-patch position, p pixels apart), and attention runs in
  these windows. Information therefore crosses patches without reaching the whole image
  (App. E: the region size bounds the distance, unlike Shuffle Transformer's image-wide grid).
* The "v3" L1/L2 design adopted by the paper (Sec. 5.1, Tab. 7): L1 and L2 in the same layer,
  no projection between them, and Q and K of both at half the channel width; one output
  projection after L2. Dot-product attention (Sec. 4.2, Tab. 5).
* L3 information flow (Sec. 3.2): a convolutional feed-forward network, a 3x3 (depthwise)
  convolution between two linear layers.
* The Hi-IR layer (Sec. 3.3, Eq. 1): ``X = X + L1L2(LN(X))``, ``Y = X + L3(LN(X))``.
* Stages (App. A.1, Tab. 17) end in the "conv3" bottleneck that Sec. 4.2 / Tab. 4 adopt in place
  of a dense 3x3 convolution: 3x3 conv to C/4, 1x1 conv, 3x3 conv back to C.
* Columnar architecture for SR (Sec. 3.4, Fig. 8): conv, six stages of six layers (Hi-IR-B),
  LayerNorm, conv3, long skip, pixel-shuffle upsampler. U-shape for restoration (Fig. 3(c)):
  three down stages, one latent stage and three up stages of six layers each.

What the paper's text (ours lost its symbols) leaves open, and how the published numbers fix it:

* Width C = 180 and six heads for Hi-IR-B. Tab. 4 gives 15.69 M (x2) with dense 3x3 stage
  convolutions and Tab. 8 gives 14.68 M with conv3 bottlenecks: the 1.01 M difference is
  exactly 7 x (9 - 4.4375) C^2 for C = 180 (six stage-end convolutions plus the one after the
  body), and Tab. 4's conv1 / linear / conv3 gaps (3.37 M / 1.87 M = 8 / 4.4375) confirm the
  3x3 (C/4), 1x1, 3x3 bottleneck. The x2 / x3 / x4 counts (14.68 / 14.87 / 14.83 M) differ as a
  64-channel SwinIR-style pixel-shuffle upsampler does (x3 > x4).
* Tab. 7: v2 - v1 = 4.87 M and v3 - v1 = 1.34 M over 36 layers match attention of 4C^2 (v1),
  8C^2 (v2) and 5C^2 (v3, halved Q/K) per layer plus about 4.6 k parameters per extra attention,
  which is the size of a Swin-V2 continuous position bias MLP (2 -> 512 -> heads). We give L1 and
  L2 one such MLP each; the attention itself stays dot product (Tab. 5).
* Tab. 7: removing L3 removes 2.48 M (68.9 k per layer) and leaves 13.21 M: the L3 network has
  hidden width 3C (fc 3C^2, depthwise 3x3, fc 3C^2) against a plain MLP of width 2C without it.
  We use ``mlp_ratio=3``: Linear, GELU, depthwise 3x3, Linear.
* Patch sizes: p = 16 and P = 64 (four patches per side in an L2 window) for SR. Tab. 6's
  costs were counted on a 128 x 128 LR input with attention products included (its SwinIR entry,
  215.32 G, is exactly what ``mmengine.analysis.FlopAnalyzer`` gives SwinIR there); at that size
  Hi-IR-B x4 costs 288.9 G MACs here against the paper's 287.20 G, which also supports the
  widths above.
* U-shape (no widths given): channels C, 2C, 4C on the down stages, the latent stage at 1/8
  resolution with 4C, 2x2 stride-2 convolutions down, 1x1 conv + PixelShuffle up, skip
  concatenated and reduced by a 1x1 conv, global residual, p = 8 and P = 32 at every level,
  heads 5, 5, 10, 10 (query/key head width 7, 14, 14, 14). C = 70 gives 22.05 M parameters
  (Tab. 6/9: 22.33 M) and 162.4 G MACs at 256 x 256 (Tab. 6: 153.66 G, counted as for SR). Of
  the layouts tried (widths x1,2,4,8 / 1,2,4,6 / 1,2,2,4 / 1,2,4,4, FFN ratio 3 or 4) this is the
  only one within 3 % of the parameter count and closest in cost. It is a reading, not a
  reproduction: nothing in the paper pins the U-shape's widths.
* Any H x W: attention pads its input to a multiple of P and masks the padded keys, so only the
  U-shape's downsampling factor (8) pads the image; the SR network needs no image padding.
* Activation in conv3: LeakyReLU(0.2) (SwinIR's bottleneck); weights: truncated normal (0.02) for
  linear layers, as SwinIR / GRL.

Variants (``python -m ecma_basicsr.presets --arch HiIR`` counts them against the paper)::

    B, columnar, x2 / x3 / x4   C=180, 6x6 layers, heads 6, p/P 16/64   paper 14.68 / 14.87 / 14.83 M
    B, U-shape (upscale 1)      C=70, 4x6 + 3x6 layers, p/P 8/32         paper 22.33 M

The published counts are in :data:`PRESETS`.
"""
from functools import lru_cache

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.arch_util import crop_to, init_transformer_weights, pad_to_multiple
from ecma_basicsr.archs.grl_arch import Upsample, merge, partition, relative_position_table
from ecma_basicsr.archs.presets import Preset, resolve_preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['HiIRAttention', 'ConvFFN', 'HiIRLayer', 'HiIRStage', 'HiIR', 'HIIR_VARIANTS', 'PRESETS']

_MASK_VALUE = -1e4  # finite, so a window made only of padding still has a defined softmax

HIIR_VARIANTS = {
    # columnar (SR): Tab. 17 Hi-IR-Base, widths inferred in the module docstring
    'B': dict(columnar=dict(embed_dim=180, depths=[6] * 6, num_heads=6, patch_size=16, region_size=64),
              ushape=dict(embed_dim=70, depths=[6, 6, 6, 6], num_heads=[5, 5, 10, 10], patch_size=8,
                          region_size=32, dim_mults=[1, 2, 4, 4])),
}
_PAPER = 'Hi-IR paper, SR and color-denoising tables'
PRESETS = {
    'HiIR-B-x2': Preset('HiIR', dict(variant='B', upscale=2), params=14.68e6, source=_PAPER, scale=2),
    'HiIR-B-x3': Preset('HiIR', dict(variant='B', upscale=3), params=14.87e6, source=_PAPER, scale=3),
    'HiIR-B-x4': Preset('HiIR', dict(variant='B', upscale=4), params=14.83e6, source=_PAPER, scale=4),
    'HiIR-B': Preset('HiIR', dict(variant='B', upscale=1), params=22.33e6, source=_PAPER),
}


# ----------------------------------------------------------------------------------------------
# L1 / L2 information flow attention
# ----------------------------------------------------------------------------------------------
def l2_partition(x, patch, region):
    """``(B, H, W, C)`` -> ``(B * nWin, (region/patch)^2, C)``: the L2 permutation.

    A window gathers, inside one ``region x region`` block, the tokens that sit at the same position
    of every ``patch x patch`` patch (they are ``patch`` pixels apart).
    """
    b, h, w, c = x.shape
    g = region // patch
    x = x.view(b, h // region, g, patch, w // region, g, patch, c)
    x = x.permute(0, 1, 4, 3, 6, 2, 5, 7)  # b, Hr, Wr, in-patch y, in-patch x, patch row, patch col, c
    return x.reshape(-1, g * g, c)


def l2_merge(windows, patch, region, hw):
    """Inverse of :func:`l2_partition`."""
    h, w = hw
    g = region // patch
    c = windows.shape[-1]
    x = windows.view(-1, h // region, w // region, patch, patch, g, g, c)
    x = x.permute(0, 1, 5, 3, 2, 6, 4, 7)
    return x.reshape(-1, h, w, c)


@lru_cache(maxsize=64)
def padding_masks(hw, valid_hw, patch, region):
    """Additive key masks ``(nWin, N)`` for L1 and L2 windows when ``hw`` is padded beyond ``valid_hw``."""
    valid = torch.zeros(1, hw[0], hw[1], 1)
    valid[:, :valid_hw[0], :valid_hw[1]] = 1
    l1 = partition(valid, (patch, patch)).squeeze(-1)
    l2 = l2_partition(valid, patch, region).squeeze(-1)
    return (1 - l1) * _MASK_VALUE, (1 - l2) * _MASK_VALUE


class PositionBias(nn.Module):
    """Continuous relative position bias: a 2 -> hidden -> heads MLP on log-spaced offsets (Swin-V2).

    Window-size independent, so the same weights serve any patch / region size.
    """

    def __init__(self, num_heads, hidden=512):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_heads, bias=False))

    def forward(self, size, ref):
        table, index = relative_position_table(size, size)
        bias = self.mlp(table.to(ref.device, ref.dtype))[index.to(ref.device)]  # N, N, heads
        return 16 * torch.sigmoid(bias.permute(2, 0, 1))  # bounded, as in Swin-V2


class HiIRAttention(nn.Module):
    """L1 (within-patch) then L2 (across-patch) attention, the "v3" design of Tab. 7.

    Args:
        dim (int): Channels C. V has C channels, Q and K C/2 (halved, Sec. 5.1).
        num_heads (int): Heads (C/2 and C must both be multiples).
        patch_size (int): L1 patch side p.
        region_size (int): L2 region side P (a multiple of p); L2 windows hold (P/p)^2 tokens.
        qkv_bias (bool): Bias in the Q/K/V projections.
    """

    def __init__(self, dim, num_heads, patch_size, region_size, qkv_bias=True):
        super().__init__()
        if region_size % patch_size:
            raise ValueError(f'Hi-IR: region_size ({region_size}) must be a multiple of patch_size ({patch_size})')
        self.qk_dim = dim // 2
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f'Hi-IR: dim/2 ({self.qk_dim}) must be a multiple of num_heads ({num_heads})')
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.region_size = region_size
        self.scale = (self.qk_dim // num_heads) ** -0.5
        self.qkv1 = nn.Linear(dim, 2 * self.qk_dim + dim, bias=qkv_bias)
        self.qkv2 = nn.Linear(dim, 2 * self.qk_dim + dim, bias=qkv_bias)  # reads the L1 output directly
        self.bias1 = PositionBias(num_heads)
        self.bias2 = PositionBias(num_heads)
        self.proj = nn.Linear(dim, dim)

    def _attend(self, qkv, bias, mask):
        """``qkv``: ``(B_, N, 2 C/2 + C)`` -> ``(B_, N, C)``; ``mask``: ``(nWin, N)`` or None."""
        b, n, _ = qkv.shape
        q, k, v = qkv.split([self.qk_dim, self.qk_dim, qkv.shape[-1] - 2 * self.qk_dim], dim=-1)
        q, k, v = (t.reshape(b, n, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.unsqueeze(0)
        if mask is not None:
            n_win = mask.shape[0]
            attn = attn.view(-1, n_win, self.num_heads, n, n) + mask.to(attn)[None, :, None, None, :]
            attn = attn.view(b, self.num_heads, n, n)
        return (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)

    def forward(self, x):
        """``x``: ``(B, H, W, C)`` -> ``(B, H, W, C)``, any H and W."""
        b, h, w, c = x.shape
        p, r = self.patch_size, self.region_size
        ph, pw = (-h) % r, (-w) % r
        mask1 = mask2 = None
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
            mask1, mask2 = padding_masks((h + ph, w + pw), (h, w), p, r)
        hw = (h + ph, w + pw)
        # L1: attention inside p x p patches
        y = self._attend(partition(self.qkv1(x), (p, p)), self.bias1((p, p), x), mask1)
        y = merge(y, (p, p), hw)
        # L2: permute so every window holds one token of each patch of a P x P region
        g = r // p
        y = self._attend(l2_partition(self.qkv2(y), p, r), self.bias2((g, g), x), mask2)
        y = self.proj(l2_merge(y, p, r, hw))
        return y[:, :h, :w] if (ph or pw) else y

    def extra_repr(self):
        return f'num_heads={self.num_heads}, patch_size={self.patch_size}, region_size={self.region_size}'


class ConvFFN(nn.Module):
    """L3 information flow: Linear, GELU, depthwise 3x3 conv, Linear (Sec. 3.2)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = self.act(self.fc1(x))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(x)


class HiIRLayer(nn.Module):
    """Hi-IR layer (Sec. 3.3, Eq. 1): pre-norm L1/L2 attention and L3 convolutional FFN, both residual."""

    def __init__(self, dim, num_heads, patch_size, region_size, mlp_ratio=3.0, qkv_bias=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = HiIRAttention(dim, num_heads, patch_size, region_size, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def conv3(dim):
    """The "conv3" bottleneck of Sec. 4.2 / Tab. 4: 3x3 to C/4, 1x1, 3x3 back to C."""
    mid = max(1, dim // 4)
    return nn.Sequential(nn.Conv2d(dim, mid, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(mid, mid, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(mid, dim, 3, padding=1))


class HiIRStage(nn.Module):
    """``depth`` Hi-IR layers, then conv3, with a residual around the stage. Works on ``(B, C, H, W)``."""

    def __init__(self, dim, depth, num_heads, patch_size, region_size, mlp_ratio=3.0, qkv_bias=True):
        super().__init__()
        self.layers = nn.ModuleList(HiIRLayer(dim, num_heads, patch_size, region_size, mlp_ratio, qkv_bias)
                                    for _ in range(depth))
        self.conv = conv3(dim)

    def forward(self, x):
        y = x.permute(0, 2, 3, 1)
        for layer in self.layers:
            y = layer(y)
        return x + self.conv(y.permute(0, 3, 1, 2))


def _per_stage(value, n):
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


@ARCH_REGISTRY.register()
class HiIR(CheckedLoadMixin, nn.Module):
    """Hi-IR: columnar network for SR (``upscale`` 2/3/4) and U-shape for restoration (``upscale`` 1).

    Args:
        upscale (int): SR factor; 1 builds the U-shape restoration network (unless ``columnar=True``).
        in_channels (int): Image channels (3 colour, 1 grayscale).
        variant (str | None): ``'B'`` (Hi-IR-B); explicit arguments override it.
        columnar (bool | None): Force the architecture; default: columnar iff ``upscale > 1``.
        embed_dim (int): Channels C (columnar) or of the first level (U-shape).
        depths (list[int]): Layers per stage. Columnar: one entry per stage. U-shape: four entries,
            the three down/up levels (shared by the down and up stage of a level) and the latent.
        num_heads (int | list[int]): Heads, per stage / per level.
        patch_size (int | list[int]): L1 patch p (per level for the U-shape).
        region_size (int | list[int]): L2 region P (per level for the U-shape).
        dim_mults (list[int]): U-shape only: channel multipliers of the four levels.
        mlp_ratio (float): L3 hidden width / C. Default: 3.
        img_range (float): Pixel range the network sees (SwinIR convention). Default: 1.
        num_out_feats (int): Channels of the SR upsampler. Default: 64.
    """

    def __init__(self, upscale=1, in_channels=3, variant='B', columnar=None, embed_dim=None, depths=None,
                 num_heads=None, patch_size=None, region_size=None, dim_mults=None, mlp_ratio=3.0, qkv_bias=True,
                 img_range=1.0, num_out_feats=64):
        super().__init__()
        self.columnar = upscale > 1 if columnar is None else bool(columnar)
        arch = 'columnar' if self.columnar else 'ushape'
        cfg = dict(resolve_preset(HIIR_VARIANTS, variant or 'B', 'Hi-IR variant')[arch])
        for k, v in dict(embed_dim=embed_dim, depths=depths, num_heads=num_heads, patch_size=patch_size,
                         region_size=region_size, dim_mults=dim_mults).items():
            if v is not None:
                cfg[k] = v
        self.cfg = dict(cfg, upscale=upscale, in_channels=in_channels, columnar=self.columnar)
        self.upscale = upscale
        self.img_range = img_range
        self.in_channels = in_channels
        mean = (0.4488, 0.4371, 0.4040) if (in_channels == 3 and self.columnar) else (0.0,) * in_channels
        self.register_buffer('mean', torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        if self.columnar:
            self._build_columnar(cfg, mlp_ratio, qkv_bias, num_out_feats)
        else:
            if upscale != 1:
                raise ValueError('The Hi-IR U-shape restores at the input size; use upscale=1 (or columnar=True).')
            self._build_ushape(cfg, mlp_ratio, qkv_bias)
        self.apply(init_transformer_weights)

    # -- columnar (SR) ------------------------------------------------------------------------
    def _build_columnar(self, cfg, mlp_ratio, qkv_bias, num_out_feats):
        dim, depths = cfg['embed_dim'], list(cfg['depths'])
        n = len(depths)
        heads, patch, region = (_per_stage(cfg[k], n) for k in ('num_heads', 'patch_size', 'region_size'))
        self.pad_size = 1  # attention pads and masks internally
        self.conv_first = nn.Conv2d(self.in_channels, dim, 3, padding=1)
        self.stages = nn.ModuleList(HiIRStage(dim, depths[i], heads[i], patch[i], region[i], mlp_ratio, qkv_bias)
                                    for i in range(n))
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = conv3(dim)
        if self.upscale > 1:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, num_out_feats, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(self.upscale, num_out_feats)
            self.conv_last = nn.Conv2d(num_out_feats, self.in_channels, 3, padding=1)
        else:
            self.conv_last = nn.Conv2d(dim, self.in_channels, 3, padding=1)

    def _forward_columnar(self, x):
        feat = self.conv_first(x)
        y = feat
        for stage in self.stages:
            y = stage(y)
        y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        feat = self.conv_after_body(y) + feat
        if self.upscale > 1:
            return self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        return x + self.conv_last(feat)

    # -- U-shape (restoration) ----------------------------------------------------------------
    def _build_ushape(self, cfg, mlp_ratio, qkv_bias):
        depths, mults = list(cfg['depths']), list(cfg['dim_mults'])
        if len(depths) != len(mults) or len(depths) < 2:
            raise ValueError('Hi-IR U-shape: depths and dim_mults need one entry per level (last = latent).')
        n = len(depths)
        heads, patch, region = (_per_stage(cfg[k], n) for k in ('num_heads', 'patch_size', 'region_size'))
        dims = [cfg['embed_dim'] * m for m in mults]
        self.pad_size = 2 ** (n - 1)

        def stage(i):
            return HiIRStage(dims[i], depths[i], heads[i], patch[i], region[i], mlp_ratio, qkv_bias)

        self.conv_first = nn.Conv2d(self.in_channels, dims[0], 3, padding=1)
        self.down_stages = nn.ModuleList(stage(i) for i in range(n - 1))
        self.downs = nn.ModuleList(nn.Conv2d(dims[i], dims[i + 1], 2, stride=2) for i in range(n - 1))
        self.latent = stage(n - 1)
        # decoder, deepest level first
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(dims[i + 1], dims[i] * 4, 1, bias=False), nn.PixelShuffle(2))
                                 for i in reversed(range(n - 1)))
        self.fuses = nn.ModuleList(nn.Conv2d(2 * dims[i], dims[i], 1) for i in reversed(range(n - 1)))
        self.up_stages = nn.ModuleList(stage(i) for i in reversed(range(n - 1)))
        self.conv_last = nn.Conv2d(dims[0], self.in_channels, 3, padding=1)

    def _forward_ushape(self, x):
        y = self.conv_first(x)
        skips = []
        for stage, down in zip(self.down_stages, self.downs):
            y = stage(y)
            skips.append(y)
            y = down(y)
        y = self.latent(y)
        for up, fuse, stage, skip in zip(self.ups, self.fuses, self.up_stages, reversed(skips)):
            y = stage(fuse(torch.cat([up(y), skip], dim=1)))
        return x + self.conv_last(y)

    # -- common -------------------------------------------------------------------------------

    def forward(self, x):
        x, size = pad_to_multiple(x, self.pad_size, mode='reflect')
        x = (x - self.mean) * self.img_range
        out = self._forward_columnar(x) if self.columnar else self._forward_ushape(x)
        out = out / self.img_range + self.mean
        return crop_to(out, size, self.upscale)

    def config_summary(self):
        c = self.cfg
        kind = 'columnar' if self.columnar else 'U-shape'
        return f"HiIR({kind}, upscale={c['upscale']}, embed_dim={c['embed_dim']}, depths={c['depths']})"
