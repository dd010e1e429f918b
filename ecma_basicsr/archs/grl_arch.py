"""GRL, a transformer baseline: "Efficient and Explicit Modelling of Image Hierarchies for Image
Restoration" (Li, Fan, Xiang, Demandolx, Ranjan, Timofte and Van Gool, CVPR 2023).

GRL models three ranges of dependencies in every transformer layer (paper, section "Network
architecture"; poster, "The transformer layer is equipped with global, regional, and local
modelling blocks"):

* global: anchored stripe self-attention (paper, section "Anchored stripe self-attention";
  poster, "Motivation I/II"). Attention runs inside stripes (e.g. 64 x 128, alternating horizontal /
  vertical between layers, because image features are anisotropic), and goes through a small set of
  anchors: the features average-pooled by ``anchor_window_down_factor`` and projected. With anchors
  A, ``Y = softmax(Q A^T) (softmax(A K^T) V)`` (the poster's ``Y = M_e (M_d V)``), which replaces
  the quadratic stripe attention by two thin products. Cross-scale similarity is why the
  down-scaled anchors are a good summary.
* regional: shifted window self-attention (Swin style) on the other half of the channels. Both
  attentions share one QKV projection (the first half of the channels goes to windows, the second
  half to stripes) and one output projection.
* local: a convolution branch with channel attention (conv3x3 -> GELU -> conv3x3 -> channel
  attention) added in parallel to the attention, used by GRL-B.

Both attentions use cosine similarity with a learned per-head temperature and a continuous relative
position bias from a small MLP (the Swin-V2 recipe); the stripe attention has one of each for
anchor->stripe and stripe->anchor. The layer is post-normalised:
``x = x + LN(attn(x)) [+ local(x)]``, ``x = x + LN(MLP(x))``. Layers are grouped into stages that end
in a 3x3 conv with a residual. Head and tail follow SwinIR: 3x3 conv, stages, LayerNorm, 3x3 conv
with a long skip, then the upsampler (``pixelshuffle`` for GRL-S/B, ``pixelshuffledirect`` for
GRL-T, or a single conv with a global residual for restoration).

Presets (``variant`` T/S/B x ``task``), parameter counts printed by
``python -c "from ecma_basicsr.archs.grl_arch import print_presets; print_presets()"``:

=======  ===  ==============  =====  =====  ===========  ===========  =============  ============
variant  dim  depths          heads  local  SR x4 ours   SR x4 paper  restore ours   restore paper
=======  ===  ==============  =====  =====  ===========  ===========  =============  ============
T        64   4,4,4,4         2      no     0.91 M       0.91 M       0.88 M         0.88 M
S        128  4,4,4,4         2      no     3.49 M       3.49 M       3.12 M         3.12 M
B        180  4,4,8,8,8,4,4   3      yes    20.20 M      20.20 M      19.81 M        19.81 M
=======  ===  ==============  =====  =====  ===========  ===========  =============  ============

Window / stripe sizes per ``task`` (they do not change the parameter count) follow the authors'
released experiment settings: ``sr`` window 32, stripes 64 x 64; ``denoise`` window 16, stripes
64 x 128; ``deblur`` window 12, stripes 48 x 96; anchors pooled by 4 in all of them.

Choices where the paper is silent (recorded here, see the README "Networks" section):

* relative positions between a stripe token and an anchor are measured geometrically, from the
  token to the centre of the anchor's pooling cell (in input pixels), so the bias MLP sees true
  offsets; positions are log-spaced as in Swin-V2.
* the shift of windows / stripes is half their size (anchors: half the anchor stripe), the window
  shift is used in every other layer and the stripe shift in layers ``i % 4 in (2, 3)``; an axis is
  not shifted when the (padded) image is no larger than the window along it.
* the input is padded (reflection, replicate for tiny inputs) to a multiple of the least common
  multiple of the window and stripe sizes, and the output cropped back.
* state-dict keys are ours; the authors' checkpoints do not load without a key map.
"""
import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.arch_util import DropPath, crop_to, init_transformer_weights, lcm, pad_to_multiple
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['GRL', 'GRL_VARIANTS', 'GRL_TASKS', 'WindowAttention', 'AnchorStripeAttention', 'MixedAttention',
           'GRLBlock']

GRL_VARIANTS = {
    'T': dict(embed_dim=64, depths=[4, 4, 4, 4], num_heads_window=2, num_heads_stripe=2, local_connection=False,
              sr_upsampler='pixelshuffledirect'),
    'S': dict(embed_dim=128, depths=[4, 4, 4, 4], num_heads_window=2, num_heads_stripe=2, local_connection=False,
              sr_upsampler='pixelshuffle'),
    'B': dict(embed_dim=180, depths=[4, 4, 8, 8, 8, 4, 4], num_heads_window=3, num_heads_stripe=3,
              local_connection=True, sr_upsampler='pixelshuffle'),
}

GRL_TASKS = {
    'sr': dict(window_size=32, stripe_size=[64, 64], anchor_window_down_factor=4),
    'denoise': dict(window_size=16, stripe_size=[64, 128], anchor_window_down_factor=4),
    'deblur': dict(window_size=12, stripe_size=[48, 96], anchor_window_down_factor=4),
}

_MASK_VALUE = -100.0  # added to logits of token pairs from different shifted regions


# ----------------------------------------------------------------------------------------------
# Geometry: windows, relative positions, shift masks (cached per size, not stored in the weights)
# ----------------------------------------------------------------------------------------------
def partition(x, size):
    """``(B, H, W, C)`` -> ``(B * nWin, size_h * size_w, C)`` non-overlapping windows."""
    b, h, w, c = x.shape
    sh, sw = size
    x = x.view(b, h // sh, sh, w // sw, sw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, sh * sw, c)


def merge(windows, size, hw):
    """Inverse of :func:`partition`."""
    sh, sw = size
    h, w = hw
    c = windows.shape[-1]
    x = windows.view(-1, h // sh, w // sw, sh, sw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def _grid(size, cell=1):
    """Pixel coordinates of the cells of a ``size`` grid whose cells are ``cell`` pixels wide
    (cell centres: an anchor pooled from a ``cell x cell`` block sits at its block's centre)."""
    ys = torch.arange(size[0], dtype=torch.float64) * cell + (cell - 1) / 2
    xs = torch.arange(size[1], dtype=torch.float64) * cell + (cell - 1) / 2
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).view(-1, 2)


@lru_cache(maxsize=64)
def relative_position_table(query_size, key_size, query_cell=1, key_cell=1):
    """Unique query-key offsets of two grids and the index of each pair into them.

    Returns:
        tuple: ``table`` of shape ``(T, 2)`` (float32, Swin-V2 log-spaced coordinates in [-1, 1]
        scaled by 8 before the log) and ``index`` of shape ``(Nq, Nk)`` (int64).
    """
    diff = _grid(query_size, query_cell)[:, None, :] - _grid(key_size, key_cell)[None, :, :]
    # Offsets are multiples of 0.5 px: scale by 2 to make them exact integers for unique().
    table, index = torch.unique((diff * 2).round().long().view(-1, 2), dim=0, return_inverse=True)
    table = table.double() / 2
    extent = table.abs().amax(0).clamp(min=1)
    table = table / extent * 8
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
    return table.float(), index.view(diff.shape[0], diff.shape[1])


def _region_labels(hw, size, shift):
    """Swin's shifted-window regions: label every pixel of the (already rolled) image."""
    labels = torch.zeros(hw, dtype=torch.long)
    cnt = 0
    slices = []
    for n, s, sh in zip(hw, size, shift):
        slices.append([slice(0, n - s), slice(n - s, n - sh), slice(n - sh, n)] if sh else [slice(0, n)])
    for hs in slices[0]:
        for ws in slices[1]:
            labels[hs, ws] = cnt
            cnt += 1
    return labels


@lru_cache(maxsize=64)
def shift_mask(hw, size, shift, down=1, anchor_query=None):
    """Additive attention masks for shifted windows / stripes, shape ``(nWin, Nq, Nk)``.

    ``down > 1`` builds the two masks of anchored attention: anchors are the ``down x down`` cells
    of the label map (shifts are multiples of ``down``, so a cell never straddles two regions);
    ``anchor_query`` says whether anchors are the queries (anchor->stripe) or the keys.
    """
    labels = _region_labels(hw, size, shift)
    tok = partition(labels.view(1, hw[0], hw[1], 1).float(), size).squeeze(-1)  # nWin, N
    if down == 1:
        q, k = tok, tok
    else:
        a_labels = labels[::down, ::down].contiguous()
        a_hw = (hw[0] // down, hw[1] // down)
        a_size = (size[0] // down, size[1] // down)
        anc = partition(a_labels.view(1, a_hw[0], a_hw[1], 1).float(), a_size).squeeze(-1)
        q, k = (anc, tok) if anchor_query else (tok, anc)
    mask = (q[:, :, None] != k[:, None, :]).float() * _MASK_VALUE
    return mask


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------
class AttentionTransform(nn.Module):
    """Cosine-similarity logits with a learned temperature and a continuous position bias.

    Args:
        num_heads (int): Heads.
        hidden (int): Width of the bias MLP (512 as in Swin-V2).
    """

    def __init__(self, num_heads, hidden=512):
        super().__init__()
        self.num_heads = num_heads
        # Temperature starts at 10 and is capped at 100 (exp of the clamp below), as in Swin-V2.
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, num_heads, bias=False))

    def forward(self, q, k, table, index, mask=None):
        """``q``: ``(B_, heads, Nq, d)``, ``k``: ``(B_, heads, Nk, d)`` -> logits ``(B_, heads, Nq, Nk)``."""
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        bias = self.cpb_mlp(table.to(q.device, q.dtype))[index.to(q.device)]  # Nq, Nk, heads
        attn = attn + 16 * torch.sigmoid(bias.permute(2, 0, 1)).unsqueeze(0)
        if mask is not None:
            n_win = mask.shape[0]
            attn = attn.view(-1, n_win, self.num_heads, *attn.shape[-2:]) + mask.to(attn)[None, :, None]
            attn = attn.view(-1, self.num_heads, *attn.shape[-2:])
        return attn


def _heads(x, num_heads):
    """``(B_, N, C)`` -> ``(B_, heads, N, C / heads)``."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def _unheads(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _axis_shift(hw, size, shift):
    """Per-axis shift, dropped on an axis where the image is no larger than the window."""
    return tuple(s if (shift and n > w) else 0 for n, w, s in zip(hw, size, (w // 2 for w in size)))


class WindowAttention(nn.Module):
    """(Shifted) window self-attention: GRL's regional range.

    Args:
        num_heads (int): Heads.
        window_size (int): Square window side.
        shift (bool): Shift the windows by half their size (with the matching mask).
    """

    def __init__(self, num_heads, window_size, shift=False):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = (window_size, window_size)
        self.shift = shift
        self.attn_transform = AttentionTransform(num_heads)

    def forward(self, qkv):
        """``qkv``: ``(B, H, W, 3C)`` -> ``(B, H, W, C)``."""
        b, h, w, c3 = qkv.shape
        size = self.window_size
        shift = _axis_shift((h, w), size, self.shift)
        if any(shift):
            qkv = torch.roll(qkv, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        q, k, v = partition(qkv, size).chunk(3, dim=-1)
        q, k, v = (_heads(t, self.num_heads) for t in (q, k, v))
        table, index = relative_position_table(size, size)
        mask = shift_mask((h, w), size, shift) if any(shift) else None
        attn = self.attn_transform(q, k, table, index, mask).softmax(dim=-1)
        x = merge(_unheads(attn @ v), size, (h, w))
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x

    def extra_repr(self):
        return f'num_heads={self.num_heads}, window_size={self.window_size}, shift={self.shift}'


class AnchorStripeAttention(nn.Module):
    """Anchored stripe self-attention: GRL's global range.

    Inside each stripe, anchors first gather the stripe (``Z = softmax(A K^T) V``), then every
    token reads the anchors (``Y = softmax(Q A^T) Z``). Cost per stripe is ``2 N M d`` for N tokens
    and M = N / down^2 anchors instead of ``N^2 d``.

    Args:
        num_heads (int): Heads.
        stripe_size (tuple[int, int]): Stripe (height, width); already transposed for vertical
            stripes.
        down (int): Anchor down-sampling factor.
        shift (bool): Shift the stripes by half their size.
    """

    def __init__(self, num_heads, stripe_size, down, shift=False):
        super().__init__()
        self.num_heads = num_heads
        self.stripe_size = tuple(stripe_size)
        self.down = down
        self.shift = shift
        for s in self.stripe_size:
            if s % down or (shift and (s // 2) % down):
                raise ValueError(f'stripe size {self.stripe_size} must be a multiple of the anchor factor {down}'
                                 f"{' (and half of it too, for shifted stripes)' if shift else ''}.")
        self.attn_transform1 = AttentionTransform(num_heads)  # anchors -> stripe tokens
        self.attn_transform2 = AttentionTransform(num_heads)  # stripe tokens -> anchors

    def forward(self, qkv, anchor):
        """``qkv``: ``(B, H, W, 3C)``, ``anchor``: ``(B, H/down, W/down, C)`` -> ``(B, H, W, C)``."""
        b, h, w, _ = qkv.shape
        size, d = self.stripe_size, self.down
        a_size = (size[0] // d, size[1] // d)
        shift = _axis_shift((h, w), size, self.shift)
        if any(shift):
            qkv = torch.roll(qkv, shifts=(-shift[0], -shift[1]), dims=(1, 2))
            anchor = torch.roll(anchor, shifts=(-(shift[0] // d), -(shift[1] // d)), dims=(1, 2))
        q, k, v = partition(qkv, size).chunk(3, dim=-1)
        q, k, v = (_heads(t, self.num_heads) for t in (q, k, v))
        a = _heads(partition(anchor, a_size), self.num_heads)

        table_a2w, index_a2w = relative_position_table(a_size, size, d, 1)
        table_w2a, index_w2a = relative_position_table(size, a_size, 1, d)
        mask_a2w = shift_mask((h, w), size, shift, d, True) if any(shift) else None
        mask_w2a = shift_mask((h, w), size, shift, d, False) if any(shift) else None
        z = self.attn_transform1(a, k, table_a2w, index_a2w, mask_a2w).softmax(dim=-1) @ v
        y = self.attn_transform2(q, a, table_w2a, index_w2a, mask_w2a).softmax(dim=-1) @ z
        x = merge(_unheads(y), size, (h, w))
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x

    def extra_repr(self):
        return (f'num_heads={self.num_heads}, stripe_size={self.stripe_size}, down={self.down}, '
                f'shift={self.shift}')


class MixedAttention(nn.Module):
    """Window attention and anchored stripe attention on the two halves of one QKV projection.

    Args:
        dim (int): Channels.
        num_heads_window (int): Heads of the window half.
        num_heads_stripe (int): Heads of the stripe half.
        window_size (int): Window side.
        window_shift (bool): Shift windows.
        stripe_size (tuple[int, int]): Stripe (height, width) for this layer.
        stripe_shift (bool): Shift stripes.
        down (int): Anchor down-sampling factor.
        qkv_bias (bool): Bias in the QKV projection.
    """

    def __init__(self, dim, num_heads_window, num_heads_stripe, window_size, window_shift, stripe_size,
                 stripe_shift, down, qkv_bias=True):
        super().__init__()
        if dim % 2 or (dim // 2) % num_heads_window or (dim // 2) % num_heads_stripe:
            raise ValueError(f'embed_dim {dim} must be even and each half divisible by the number of heads '
                             f'({num_heads_window} window, {num_heads_stripe} stripe).')
        self.dim = dim
        self.down = down
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        # Anchors: average-pool by `down`, then project to the stripe half's width.
        self.anchor = nn.Linear(dim, dim // 2)
        self.window_attn = WindowAttention(num_heads_window, window_size, window_shift)
        self.stripe_attn = AnchorStripeAttention(num_heads_stripe, stripe_size, down, stripe_shift)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        """``x``: ``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        qkv_window, qkv_stripe = self.qkv(x).split(self.dim * 3 // 2, dim=-1)
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), self.down).permute(0, 2, 3, 1)
        out = torch.cat([self.window_attn(qkv_window), self.stripe_attn(qkv_stripe, self.anchor(pooled))], dim=-1)
        return self.proj(out)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (global mean -> bottleneck -> sigmoid)."""

    def __init__(self, channels, reduction=18):
        super().__init__()
        mid = max(1, channels // reduction)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, mid, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(mid, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.attention(x)


class LocalBranch(nn.Module):
    """GRL's local range: conv3x3 (C -> C/4) -> GELU -> conv3x3 -> channel attention."""

    def __init__(self, dim, compress_ratio=4, reduction=18):
        super().__init__()
        mid = max(1, dim // compress_ratio)
        self.body = nn.Sequential(nn.Conv2d(dim, mid, 3, padding=1), nn.GELU(), nn.Conv2d(mid, dim, 3, padding=1),
                                  ChannelAttention(dim, reduction))

    def forward(self, x):
        return self.body(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Mlp(nn.Module):
    """Two-layer feed-forward network with GELU."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class GRLBlock(nn.Module):
    """One GRL transformer layer (global + regional attention, optional local branch, MLP).

    Args:
        dim (int): Channels.
        index (int): Position in its stage; decides stripe orientation (even: horizontal) and the
            window / stripe shifts.
        num_heads_window, num_heads_stripe, window_size, stripe_size, down, stripe_shift: see
            :class:`GRL`.
        mlp_ratio (float): MLP hidden width / dim.
        qkv_bias (bool): Bias in the QKV projection.
        local_connection (bool): Add the convolutional local branch.
        drop_path (float): Stochastic depth of both residual branches.
    """

    def __init__(self, dim, index, num_heads_window, num_heads_stripe, window_size, stripe_size, down,
                 stripe_shift=True, mlp_ratio=2.0, qkv_bias=True, local_connection=False, drop_path=0.0):
        super().__init__()
        horizontal = index % 2 == 0
        stripe = tuple(stripe_size) if horizontal else tuple(stripe_size)[::-1]
        self.attn = MixedAttention(dim, num_heads_window, num_heads_stripe, window_size,
                                   window_shift=index % 2 == 0, stripe_size=stripe,
                                   stripe_shift=stripe_shift and index % 4 in (2, 3), down=down, qkv_bias=qkv_bias)
        self.norm1 = nn.LayerNorm(dim)
        self.conv = LocalBranch(dim) if local_connection else None
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        out = x + self.drop_path(self.norm1(self.attn(x)))
        if self.conv is not None:
            out = out + self.conv(x)
        return out + self.drop_path(self.norm2(self.mlp(out)))


class GRLStage(nn.Module):
    """A stage: ``depth`` GRL layers then a 3x3 conv, with a residual around the whole stage."""

    def __init__(self, dim, depth, drop_path, **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(GRLBlock(dim, i, drop_path=drop_path[i], **block_kwargs) for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x):
        res = x
        for block in self.blocks:
            res = block(res)
        return x + self.conv(res.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Upsample(nn.Sequential):
    """Conv + PixelShuffle steps: ``log2(scale)`` x2 steps, or one x3 step."""

    def __init__(self, scale, channels):
        layers = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(channels, 9 * channels, 3, padding=1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f'upscale {scale} is not supported by the pixelshuffle upsampler (use 2^n or 3).')
        super().__init__(*layers)


@ARCH_REGISTRY.register()
class GRL(CheckedLoadMixin, nn.Module):
    """GRL for super-resolution (``upscale`` 2/3/4) and restoration (``upscale`` 1).

    Args:
        upscale (int): SR factor; 1 for denoising / deblurring.
        in_channels (int): Input channels.
        out_channels (int): Output channels (default: ``in_channels``).
        variant (str): ``'T'``, ``'S'`` or ``'B'``: embed_dim, depths, heads, local branch and the
            SR upsampler of the published models. Explicit arguments override it.
        task (str): ``'sr'``, ``'denoise'`` or ``'deblur'``: window / stripe / anchor sizes of the
            published experiments (default: ``'sr'`` if ``upscale > 1`` else ``'denoise'``).
        embed_dim (int): Channels.
        depths (list[int]): Layers per stage.
        num_heads_window (int | list[int]): Window-attention heads (per stage when a list).
        num_heads_stripe (int | list[int]): Stripe-attention heads (per stage when a list).
        window_size (int): Window side.
        stripe_size (list[int]): Stripe (height, width) of horizontal stripes; vertical stripes use
            the transpose.
        anchor_window_down_factor (int): Anchor pooling factor.
        stripe_shift (bool): Shift stripes in layers ``i % 4 in (2, 3)``.
        mlp_ratio (float): MLP expansion.
        qkv_bias (bool): Bias in the QKV projection.
        local_connection (bool): Convolutional local branch in every layer.
        upsampler (str): ``'pixelshuffle'``, ``'pixelshuffledirect'`` or ``''`` (restoration).
        img_range (float): Pixel range the network works in (1.0: inputs in [0, 1]).
        drop_path_rate (float): Stochastic depth, rising linearly to this value over the layers.
    """

    def __init__(self, upscale=1, in_channels=3, out_channels=None, variant=None, task=None, embed_dim=None,
                 depths=None, num_heads_window=None, num_heads_stripe=None, window_size=None, stripe_size=None,
                 anchor_window_down_factor=None, stripe_shift=True, mlp_ratio=2.0, qkv_bias=True,
                 local_connection=None, upsampler=None, img_range=1.0, drop_path_rate=0.1, num_out_feats=64):
        super().__init__()
        cfg = dict(embed_dim=64, depths=[4, 4, 4, 4], num_heads_window=2, num_heads_stripe=2, local_connection=False,
                   sr_upsampler='pixelshuffle')
        if variant is not None:
            if str(variant).upper() not in GRL_VARIANTS:
                raise ValueError(f"Unknown GRL variant '{variant}'. Choose one of: T, S, B.")
            cfg.update(GRL_VARIANTS[str(variant).upper()])
        task = task or ('sr' if upscale > 1 else 'denoise')
        if task not in GRL_TASKS:
            raise ValueError(f"Unknown GRL task '{task}'. Choose one of: {', '.join(GRL_TASKS)}.")
        cfg.update(GRL_TASKS[task])
        for k, v in dict(embed_dim=embed_dim, depths=depths, num_heads_window=num_heads_window,
                         num_heads_stripe=num_heads_stripe, window_size=window_size, stripe_size=stripe_size,
                         anchor_window_down_factor=anchor_window_down_factor,
                         local_connection=local_connection).items():
            if v is not None:
                cfg[k] = v
        if upsampler is None:
            upsampler = cfg['sr_upsampler'] if upscale > 1 else ''
        if upscale > 1 and upsampler not in ('pixelshuffle', 'pixelshuffledirect'):
            raise ValueError(f"upscale={upscale} needs upsampler 'pixelshuffle' or 'pixelshuffledirect'.")
        if upscale == 1 and upsampler:
            raise ValueError("upscale=1 (restoration) uses upsampler ''.")

        dim = cfg['embed_dim']
        depths = list(cfg['depths'])
        n_stages = len(depths)
        heads_w = cfg['num_heads_window']
        heads_s = cfg['num_heads_stripe']
        heads_w = list(heads_w) if isinstance(heads_w, (list, tuple)) else [heads_w] * n_stages
        heads_s = list(heads_s) if isinstance(heads_s, (list, tuple)) else [heads_s] * n_stages
        self.cfg = dict(upscale=upscale, in_channels=in_channels, embed_dim=dim, depths=depths,
                        num_heads_window=heads_w, num_heads_stripe=heads_s, window_size=cfg['window_size'],
                        stripe_size=list(cfg['stripe_size']),
                        anchor_window_down_factor=cfg['anchor_window_down_factor'],
                        local_connection=cfg['local_connection'], upsampler=upsampler)
        self.upscale = upscale
        self.upsampler = upsampler
        self.img_range = img_range
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        sh, sw = cfg['stripe_size']
        self.pad_size = lcm(cfg['window_size'], sh, sw)
        mean = (0.4488, 0.4371, 0.4040) if in_channels == 3 else (0.0,) * in_channels  # DIV2K RGB mean
        self.register_buffer('mean', torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.norm_start = nn.LayerNorm(dim)
        n_layers = sum(depths)
        dpr = [drop_path_rate * i / max(1, n_layers - 1) for i in range(n_layers)]  # linear, as in Swin
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.layers.append(GRLStage(
                dim, depth, dpr[sum(depths[:i]):sum(depths[:i + 1])], num_heads_window=heads_w[i],
                num_heads_stripe=heads_s[i], window_size=cfg['window_size'], stripe_size=cfg['stripe_size'],
                down=cfg['anchor_window_down_factor'], stripe_shift=stripe_shift, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, local_connection=cfg['local_connection']))
        self.norm_end = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)

        if upsampler == 'pixelshuffle':
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, num_out_feats, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, num_out_feats)
            self.conv_last = nn.Conv2d(num_out_feats, self.out_channels, 3, padding=1)
        elif upsampler == 'pixelshuffledirect':
            # One conv straight to out_channels * scale^2, then PixelShuffle: the lightweight tail.
            self.upsample = nn.Sequential(nn.Conv2d(dim, self.out_channels * upscale ** 2, 3, padding=1),
                                          nn.PixelShuffle(upscale))
        else:
            self.conv_last = nn.Conv2d(dim, self.out_channels, 3, padding=1)
        self.apply(init_transformer_weights)


    def forward_features(self, x):
        x = self.norm_start(x.permute(0, 2, 3, 1))
        for layer in self.layers:
            x = layer(x)
        return self.norm_end(x).permute(0, 3, 1, 2)

    def forward(self, x):
        x, size = pad_to_multiple(x, self.pad_size, mode='reflect')
        x = (x - self.mean) * self.img_range
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if self.upsampler == 'pixelshuffle':
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        elif self.upsampler == 'pixelshuffledirect':
            out = self.upsample(feat)
        elif self.in_channels == self.out_channels:
            out = x + self.conv_last(feat)
        else:
            out = self.conv_last(feat)
        out = out / self.img_range + self.mean[:, :out.shape[1]]
        return crop_to(out, size, self.upscale)

    def config_summary(self):
        c = self.cfg
        return (f"GRL(upscale={c['upscale']}, embed_dim={c['embed_dim']}, depths={c['depths']}, "
                f"local_connection={c['local_connection']}, upsampler='{c['upsampler']}')")

    def checkpoint_hint(self, state_dict):
        w = state_dict.get('conv_first.weight')
        if w is None:
            return None
        stages = {int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')}
        local = any('.conv.body.' in k for k in state_dict)
        if 'upsample.0.weight' in state_dict and 'conv_last.weight' not in state_dict:
            up = 'pixelshuffledirect'
        elif 'upsample.0.weight' in state_dict:
            up = 'pixelshuffle'
        else:
            up = "'' (restoration)"
        return (f'the checkpoint looks like embed_dim={w.shape[0]}, {len(stages)} stages, '
                f'local_connection={local}, upsampler={up}.')


def print_presets():
    """Print the parameter count of every preset (the table in the module docstring)."""
    for variant in 'TSB':
        counts = []
        for kwargs in (dict(upscale=4, task='sr'), dict(upscale=1, task='denoise'), dict(upscale=1, task='deblur')):
            net = GRL(variant=variant, **kwargs)
            counts.append(sum(p.numel() for p in net.parameters()) / 1e6)
        print(f'GRL-{variant}  SR x4 {counts[0]:6.2f} M   denoise {counts[1]:6.2f} M   deblur {counts[2]:6.2f} M')
