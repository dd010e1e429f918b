"""GRL, a transformer baseline: "Efficient and Explicit Modelling of Image Hierarchies for Image
Restoration" (Li, Fan, Xiang, Demandolx, Ranjan, Timofte and Van Gool, CVPR 2023), computed as the
authors' release computes it (github.com/ofsoundof/GRL-Image-Restoration @ 3123fca, class ``GRL`` in
``models/networks/grl.py`` with the efficient block of ``models/common/mixed_attn_block_efficient.py``).

GRL models three ranges of dependencies in every transformer layer (paper, section "Network
architecture"; poster, "The transformer layer is equipped with global, regional, and local
modelling blocks"):

* global: anchored stripe self-attention (paper, section "Anchored stripe self-attention"; poster,
  "Motivation I/II"). Attention runs inside stripes (e.g. 64 x 128, horizontal in even layers and
  transposed in odd ones, because image features are anisotropic) and goes through anchors: the
  features average-pooled by ``anchor_window_down_factor`` and projected. With anchors A,
  ``Y = softmax(Q A^T) (softmax(A K^T) V)`` (the poster's ``Y = M_e (M_d V)``), two thin products
  instead of the quadratic stripe attention.
* regional: shifted window self-attention (Swin style) on the other half of the channels. Both
  attentions share one QKV projection (first half of the channels to windows, second half to
  stripes) and one output projection.
* local (GRL-B, ``local_connection``): conv3x3 (C -> C/4) -> GELU -> conv3x3 -> channel attention,
  added in parallel to the attention branch.

Both attentions use cosine similarity with a learned per-head temperature (capped at 100) and a
continuous position bias ``16 sigmoid(MLP(table))`` (the Swin-V2 recipe); the stripe attention has
one of each for anchor -> stripe and stripe -> anchor. Post-normalised layers:
``x = x + LN(attn(x)) [+ local(x)]``, ``x = x + LN(MLP(x))``; stages end in a 3x3 conv with a
residual; head and tail follow SwinIR (``pixelshuffle`` for GRL-S/B SR, ``pixelshuffledirect`` for
GRL-T, ``nearest+conv`` for real-world SR, one conv and a global residual for restoration).

What the authors' code does where the paper is silent (all reproduced here; max |ours - theirs| on
the golden fixtures in ``../shared/golden`` is below 1e-5, ``tests/test_golden.py``):

* Position bias of anchored attention (``models/common/ops.py``: ``get_relative_coords_table_all``,
  ``get_relative_position_index_simple``): a token at (y, x) and an anchor at (i, j) of the pooled
  grid are compared by their integer grid indices, ``(y - i, x - j)``, not by where the anchor's
  pooling cell lies. The table covers ``s + s/d - 1`` offsets per axis, centred by
  ``(s - s/d) // 2``, normalised by its largest positive entry and log-spaced as in Swin-V2; one
  table serves both directions, each with its own index. Windows are the case ``d = 1``.
* Shifts: windows shift by half the window in every even layer, stripes by half the stripe in
  layers ``i % 4 in (2, 3)`` (anchors by that shift // d), always, even when the padded image is a
  single window or stripe along an axis (the roll and the Swin region masks are applied anyway).
* Padding: bottom/right to a multiple of ``max(window, stripes, stripe_groups * d)``, by
  reflection, or with zeros when reflection is impossible (a pad as large as the image side; then
  both axes are zero-padded). The output is cropped back.
* Per-task settings of the released models (``config/experiment/*``, ``scripts/grl/grl_test.md``):
  SR window 32 / stripes 64x64; denoising 16 / 64x128; motion deblurring 12 / 48x96; anchors pooled
  by 4, except GRL-B SR and GRL-B denoising, tested with 2 (and GRL-B denoising with window 32).

The class takes the authors' constructor arguments (their option files build the same network; see
:class:`GRL`) as well as ours (``variant``, ``task``). Our state-dict keys differ from the authors'
in four places (``attn.qkv``, ``attn.anchor``, ``conv.body``, ``upsample``); ``load_state_dict``
maps the authors' layout (and drops their 13 non-learned buffers) itself, so their checkpoints load
through BasicSR's ``pretrain_network_g`` as they are.

Presets (``PRESETS``; parameter counts printed by
``python -m ecma_basicsr.presets --arch GRL``):

=============  =====  ===  =============  =====  =====  ==============  ======  ==========
preset         scale  dim  depths         heads  local  window/stripes  anchor  params
=============  =====  ===  =============  =====  =====  ==============  ======  ==========
GRL-T-SRx4     4      64   4,4,4,4        2      no     32 / 64x64      4       906,192
GRL-S-SRx4     4      128  4,4,4,4        2      no     32 / 64x64      4       3,487,715
GRL-B-SRx4     4      180  4,4,8,8,8,4,4  3      yes    32 / 64x64      2       20,201,299
GRL-T-Denoise  1      64   4,4,4,4        2      no     16 / 64x128     4       880,227
GRL-S-Denoise  1      128  4,4,4,4        2      no     16 / 64x128     4       3,120,227
GRL-B-Denoise  1      180  4,4,8,8,8,4,4  3      yes    32 / 64x128     2       19,805,263
GRL-B-Deblur   1      180  4,4,8,8,8,4,4  3      yes    12 / 48x96      4       19,805,263
=============  =====  ===  =============  =====  =====  ==============  ======  ==========

Published: 0.91 / 3.49 / 20.20 M for SR x4 (the paper's Table 10), 0.88 / 3.12 / 19.81 M for
restoration (Table 7; the motion-deblurring GRL-B of Table 4 is the same network).
"""
import logging
import math
from contextlib import nullcontext
from functools import lru_cache

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from ecma_basicsr.archs.arch_util import DropPath, crop_to, init_transformer_weights
from ecma_basicsr.archs.presets import Preset, resolve_preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin, strip_prefix

__all__ = ['GRL', 'PRESETS', 'WindowAttention', 'AnchorStripeAttention', 'MixedAttention', 'GRLBlock',
           'anchor_coords_table', 'anchor_position_index', 'shift_mask', 'map_authors_state_dict']

# Architecture of the released models: the authors' config/model/grl/grl_{tiny,small,base}.yaml.
_VARIANTS = {
    'T': dict(embed_dim=64, depths=[4, 4, 4, 4], num_heads_window=2, num_heads_stripe=2, local_connection=False,
              sr_upsampler='pixelshuffledirect'),
    'S': dict(embed_dim=128, depths=[4, 4, 4, 4], num_heads_window=2, num_heads_stripe=2, local_connection=False,
              sr_upsampler='pixelshuffle'),
    'B': dict(embed_dim=180, depths=[4, 4, 8, 8, 8, 4, 4], num_heads_window=3, num_heads_stripe=3,
              local_connection=True, sr_upsampler='pixelshuffle'),
}
# Window / stripe / anchor geometry of the released experiments: config/experiment/sr/grl/grl_p256.yaml,
# dn/grl/grl_p256.yaml, db_motion/grl_p480.yaml.
_TASKS = {
    'sr': dict(window_size=32, stripe_size=[64, 64], anchor_window_down_factor=4),
    'denoise': dict(window_size=16, stripe_size=[64, 128], anchor_window_down_factor=4),
    'deblur': dict(window_size=12, stripe_size=[48, 96], anchor_window_down_factor=4),
}
# The authors' test commands (scripts/grl/grl_test.md) override these for GRL-B.
_TEST_OVERRIDES = {
    ('B', 'sr'): dict(anchor_window_down_factor=2),
    ('B', 'denoise'): dict(window_size=32, anchor_window_down_factor=2),
}
_TASK_TAGS = {'sr': 'SRx4', 'denoise': 'Denoise', 'deblur': 'Deblur'}

PRESETS = {
    'GRL-T-SRx4': Preset(arch='GRL', kwargs=dict(variant='T', task='sr', upscale=4), params=0.91e6,
                         source='GRL (CVPR 2023) Table 10', scale=4),
    'GRL-S-SRx4': Preset(arch='GRL', kwargs=dict(variant='S', task='sr', upscale=4), params=3.49e6,
                         source='GRL (CVPR 2023) Table 10', scale=4),
    'GRL-B-SRx4': Preset(arch='GRL', kwargs=dict(variant='B', task='sr', upscale=4), params=20.20e6,
                         source='GRL (CVPR 2023) Table 10', scale=4),
    'GRL-T-Denoise': Preset(arch='GRL', kwargs=dict(variant='T', task='denoise', upscale=1), params=0.88e6,
                            source='GRL (CVPR 2023) Table 7'),
    'GRL-S-Denoise': Preset(arch='GRL', kwargs=dict(variant='S', task='denoise', upscale=1), params=3.12e6,
                            source='GRL (CVPR 2023) Table 7'),
    'GRL-B-Denoise': Preset(arch='GRL', kwargs=dict(variant='B', task='denoise', upscale=1), params=19.81e6,
                            source='GRL (CVPR 2023) Table 7'),
    'GRL-B-Deblur': Preset(arch='GRL', kwargs=dict(variant='B', task='deblur', upscale=1), params=19.81e6,
                           source='GRL (CVPR 2023) Table 4 model; count of Table 7 (same network)'),
}

_MASK_VALUE = -100.0  # added to the logits of token pairs from different shifted regions (Swin, GRL)
_CONV_TYPES = ('1conv', '3conv', '1conv1x1', 'linear')
_UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv', '')
# Keys of the authors' model configs that their GRL accepts and ignores (it takes **kwargs).
_AUTHORS_IGNORED = frozenset({'name', 'double_window', 'stripe_square', 'separable_conv_act', 'use_buffer',
                              'use_efficient_buffer'})


# ----------------------------------------------------------------------------------------------
# Geometry: windows, position tables, shift masks (cached per size; not part of the weights)
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
    ys = torch.arange(size[0], dtype=torch.float64) * cell + (cell - 1) / 2
    xs = torch.arange(size[1], dtype=torch.float64) * cell + (cell - 1) / 2
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).view(-1, 2)


@lru_cache(maxsize=64)
def relative_position_table(query_size, key_size, query_cell=1, key_cell=1):
    """Geometric offsets between two grids (cell centres, in pixels), Swin-V2 log-spaced.

    Used by Hi-IR (:mod:`.hiir_arch`), whose attention is window-to-window; for equal grids and
    cells it is the Swin-V2 table. GRL itself uses :func:`anchor_coords_table`.

    Returns:
        tuple: ``table`` ``(T, 2)`` float32 and ``index`` ``(Nq, Nk)`` int64 into it.
    """
    diff = _grid(query_size, query_cell)[:, None, :] - _grid(key_size, key_cell)[None, :, :]
    # Offsets are multiples of 0.5 px: scale by 2 to make them exact integers for unique().
    table, index = torch.unique((diff * 2).round().long().view(-1, 2), dim=0, return_inverse=True)
    table = table.double() / 2
    extent = table.abs().amax(0).clamp(min=1)
    table = table / extent * 8
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
    return table.float(), index.view(diff.shape[0], diff.shape[1])


@lru_cache(maxsize=64)
def anchor_coords_table(size, down=1, pretrained=(0, 0), device=None):
    """The bias-MLP inputs of GRL's attention between a ``size`` window and its ``size // down`` anchors.

    Per axis the offsets run from ``-(a - 1) - (s - a) // 2`` to ``s - 1 - (s - a) // 2`` (``a = s //
    down``), are divided by the largest one (by the same quantity of ``pretrained`` when it is set),
    scaled to [-8, 8] and log-spaced, in float32 as the authors compute them. ``down = 1`` gives the
    window table.

    Returns:
        Tensor: ``((s_h + a_h - 1) * (s_w + a_w - 1), 2)``, row-major over (dy, dx).
    """
    anchors = [s // down for s in size]
    low = [-(a - 1) - (s - a) // 2 for s, a in zip(size, anchors)]
    high = [s - 1 - (s - a) // 2 for s, a in zip(size, anchors)]
    p_high = [p - 1 - (p - p // down) // 2 for p in pretrained]
    norm = p_high if p_high[0] > 0 else high
    axes = [torch.arange(lo, hi + 1, dtype=torch.float32) / n * 8 for lo, hi, n in zip(low, high, norm)]
    table = torch.stack(torch.meshgrid(*axes, indexing='ij'), -1).view(-1, 2)
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0  # log2(8)
    return table.to(device)


@lru_cache(maxsize=64)
def anchor_position_index(size, down=1, anchor_query=False, device=None):
    """Index into :func:`anchor_coords_table` for every (query, key) pair.

    Tokens and anchors are compared by their grid indices (both grids start at 0).

    Args:
        size (tuple[int, int]): Window / stripe size.
        down (int): Anchor factor; 1 for window attention (tokens against tokens).
        anchor_query (bool): Anchors are the queries (anchor -> stripe); else the keys.

    Returns:
        Tensor: int64 ``(Nq, Nk)``.
    """
    anchors = (size[0] // down, size[1] // down)
    tok = torch.stack(torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing='ij'), -1).view(-1, 2)
    anc = torch.stack(torch.meshgrid(torch.arange(anchors[0]), torch.arange(anchors[1]), indexing='ij'),
                      -1).view(-1, 2)
    if anchor_query:
        diff, offset = anc[:, None] - tok[None], (size[0] - 1, size[1] - 1)
    else:
        diff, offset = tok[:, None] - anc[None], (anchors[0] - 1, anchors[1] - 1)
    row_len = anchors[1] + size[1] - 1
    return ((diff[..., 0] + offset[0]) * row_len + diff[..., 1] + offset[1]).to(device)


def _axis_regions(n, size, shift):
    """Swin's three shifted regions along one axis: ``[0, n - size)``, ``[n - size, n - shift)``,
    ``[n - shift, n)``. With ``shift == 0`` the authors' slices (``-size:-0`` is empty, ``-0:`` is
    everything) put the whole axis in the last region."""
    regions = torch.full((n,), 2, dtype=torch.long)
    if shift:
        regions[:n - size] = 0
        regions[n - size:n - shift] = 1
    return regions


def _region_labels(hw, size, shift):
    rows = _axis_regions(hw[0], size[0], shift[0])
    cols = _axis_regions(hw[1], size[1], shift[1])
    return rows[:, None] * 3 + cols[None, :]


@lru_cache(maxsize=32)
def _window_labels(hw, size, shift, down, device):
    """Region labels of every window's tokens ``(nWin, N)`` and of its anchors ``(nWin, M)`` (the
    anchors are labelled on the pooled grid with the pooled window and shift)."""
    tok = partition(_region_labels(hw, size, shift).view(1, hw[0], hw[1], 1), size).squeeze(-1)
    if down == 1:
        return tok.to(device), tok.to(device)
    a_hw = (hw[0] // down, hw[1] // down)
    a_size = (size[0] // down, size[1] // down)
    a_labels = _region_labels(a_hw, a_size, (shift[0] // down, shift[1] // down))
    anc = partition(a_labels.view(1, a_hw[0], a_hw[1], 1), a_size).squeeze(-1)
    return tok.to(device), anc.to(device)


def shift_mask(hw, size, shift, down=1, anchor_query=None, device=None):
    """Additive masks of shifted windows / stripes, ``(nWin, Nq, Nk)``: ``-100`` between tokens of
    different regions of the rolled image, else 0.

    With ``down > 1`` the keys (``anchor_query=False``) or the queries (``True``) are anchors. Only the
    labels are cached: the masks, as large as one head's attention map, are built for each call.
    """
    tok, anc = _window_labels(tuple(hw), tuple(size), tuple(shift), down, device)
    q, k = (anc, tok) if anchor_query else (tok, anc)
    return (q[:, :, None] != k[:, None, :]).float() * _MASK_VALUE


def stripe_geometry(stripe_size, stripe_groups, hw):
    """Stripe (h, w) and its shift for a padded image ``hw``: a fixed size shifts by half of it; a
    number of groups ``g`` makes the stripe ``n / g`` long with shift ``n / 2g`` (none for g = 1)."""
    size, shift = [], []
    for s, g, n in zip(stripe_size, stripe_groups, hw):
        if g is None:
            size.append(s)
            shift.append(s // 2)
        else:
            size.append(n // g)
            shift.append(0 if g == 1 else n // (2 * g))
    return tuple(size), tuple(shift)


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------
class AttentionTransform(nn.Module):
    """Learned temperature, continuous position bias and shift mask applied to a similarity map.

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

    def forward(self, attn, table, index, mask=None):
        """``attn``: ``(B_, heads, Nq, Nk)`` similarities -> logits of the same shape."""
        attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        bias = self.cpb_mlp(table.to(attn.dtype))[index.view(-1)]
        bias = bias.view(*index.shape, -1).permute(2, 0, 1)
        attn = attn + 16 * torch.sigmoid(bias).unsqueeze(0)
        if mask is not None:
            n_win = mask.shape[0]
            attn = attn.view(-1, n_win, self.num_heads, *attn.shape[-2:]) + mask.to(attn.dtype)[None, :, None]
            attn = attn.view(-1, self.num_heads, *attn.shape[-2:])
        return attn


def _heads(x, num_heads):
    """``(B_, N, C)`` -> ``(B_, heads, N, C / heads)``."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def _unheads(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class _Attend(nn.Module):
    """Similarity (cosine, or the authors' Euclidean-distance ablation), transform, softmax, dropout."""

    def __init__(self, attn_drop=0.0, euclidean_dist=False):
        super().__init__()
        self.euclidean_dist = euclidean_dist
        self.attn_drop = nn.Dropout(attn_drop)

    def attend(self, q, k, v, transform, table, index, mask):
        if self.euclidean_dist:
            sim = torch.norm(q.unsqueeze(-2) - k.unsqueeze(-3), dim=-1)
        else:
            sim = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = transform(sim, table, index, mask).softmax(dim=-1)
        return self.attn_drop(attn) @ v


class WindowAttention(_Attend):
    """(Shifted) window self-attention: GRL's regional range.

    Args:
        num_heads (int): Heads.
        window_size (int): Square window side.
        shift (bool): Roll by half a window (and mask the wrapped regions).
        attn_drop (float): Dropout on the attention weights.
        euclidean_dist (bool): Negative-free Euclidean distance instead of cosine similarity.
        pretrained_window_size (tuple[int, int]): Normalise the bias table for this window instead.
    """

    def __init__(self, num_heads, window_size, shift=False, attn_drop=0.0, euclidean_dist=False,
                 pretrained_window_size=(0, 0)):
        super().__init__(attn_drop, euclidean_dist)
        self.num_heads = num_heads
        self.window_size = (window_size, window_size)
        self.shift = shift
        self.pretrained_window_size = tuple(pretrained_window_size)
        self.attn_transform = AttentionTransform(num_heads)

    def forward(self, qkv):
        """``qkv``: ``(B, H, W, 3C)`` -> ``(B, H, W, C)``."""
        b, h, w, _ = qkv.shape
        size, dev = self.window_size, qkv.device
        half = size[0] // 2
        if self.shift:
            qkv = torch.roll(qkv, shifts=(-half, -half), dims=(1, 2))
        q, k, v = (_heads(t, self.num_heads) for t in partition(qkv, size).chunk(3, dim=-1))
        table = anchor_coords_table(size, 1, self.pretrained_window_size, dev)
        index = anchor_position_index(size, 1, False, dev)
        mask = shift_mask((h, w), size, (half, half), device=dev) if self.shift else None
        x = merge(_unheads(self.attend(q, k, v, self.attn_transform, table, index, mask)), size, (h, w))
        if self.shift:
            x = torch.roll(x, shifts=(half, half), dims=(1, 2))
        return x

    def extra_repr(self):
        return f'num_heads={self.num_heads}, window_size={self.window_size}, shift={self.shift}'


class AnchorStripeAttention(_Attend):
    """Anchored stripe self-attention: GRL's global range.

    Inside each stripe, anchors first gather the stripe (``Z = softmax(A K^T) V``), then every token
    reads the anchors (``Y = softmax(Q A^T) Z``): ``2 N M d`` per stripe for N tokens and
    M = N / down^2 anchors instead of ``N^2 d``.

    Args:
        num_heads (int): Heads.
        stripe_size (tuple): Stripe (height, width), already transposed for vertical stripes; an
            entry may be None where ``stripe_groups`` gives the number of stripes along that axis.
        down (int): Anchor down-sampling factor.
        shift (bool): Roll by half a stripe (anchors by that // down) and mask the wrapped regions.
        stripe_groups (tuple): Per axis None (fixed size) or the number of stripes.
        attn_drop, euclidean_dist: see :class:`WindowAttention`.
        pretrained_stripe_size (tuple[int, int]): Normalise the bias table for this stripe instead.
    """

    def __init__(self, num_heads, stripe_size, down, shift=False, stripe_groups=(None, None), attn_drop=0.0,
                 euclidean_dist=False, pretrained_stripe_size=(0, 0)):
        super().__init__(attn_drop, euclidean_dist)
        self.num_heads = num_heads
        self.stripe_size = tuple(stripe_size)
        self.stripe_groups = tuple(stripe_groups)
        self.down = down
        self.shift = shift
        self.pretrained_stripe_size = tuple(pretrained_stripe_size)
        for s, g in zip(self.stripe_size, self.stripe_groups):
            if g is None and (s is None or s % down):
                raise ValueError(f'stripe size {self.stripe_size} must be given and a multiple of the anchor factor '
                                 f'{down} along every axis without stripe_groups.')
        self.attn_transform1 = AttentionTransform(num_heads)  # anchors -> stripe tokens
        self.attn_transform2 = AttentionTransform(num_heads)  # stripe tokens -> anchors

    def forward(self, qkv, anchor):
        """``qkv``: ``(B, H, W, 3C)``, ``anchor``: ``(B, H/down, W/down, C)`` -> ``(B, H, W, C)``."""
        b, h, w, _ = qkv.shape
        d, dev = self.down, qkv.device
        size, shift = stripe_geometry(self.stripe_size, self.stripe_groups, (h, w))
        if h % size[0] or w % size[1] or size[0] % d or size[1] % d:
            raise ValueError(f'GRL stripes {size} (stripe_size {self.stripe_size}, stripe_groups {self.stripe_groups}) '
                             f'do not tile the padded {h}x{w} features in multiples of the anchor factor {d}.')
        a_size = (size[0] // d, size[1] // d)
        if self.shift:
            qkv = torch.roll(qkv, shifts=(-shift[0], -shift[1]), dims=(1, 2))
            anchor = torch.roll(anchor, shifts=(-(shift[0] // d), -(shift[1] // d)), dims=(1, 2))
        q, k, v = (_heads(t, self.num_heads) for t in partition(qkv, size).chunk(3, dim=-1))
        a = _heads(partition(anchor, a_size), self.num_heads)

        table = anchor_coords_table(size, d, self.pretrained_stripe_size, dev)
        mask_a2w = shift_mask((h, w), size, shift, d, True, dev) if self.shift else None
        mask_w2a = shift_mask((h, w), size, shift, d, False, dev) if self.shift else None
        z = self.attend(a, k, v, self.attn_transform1, table, anchor_position_index(size, d, True, dev), mask_a2w)
        y = self.attend(q, a, z, self.attn_transform2, table, anchor_position_index(size, d, False, dev), mask_w2a)
        x = merge(_unheads(y), size, (h, w))
        if self.shift:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x

    def extra_repr(self):
        return (f'num_heads={self.num_heads}, stripe_size={self.stripe_size}, stripe_groups={self.stripe_groups}, '
                f'down={self.down}, shift={self.shift}')


class MixedAttention(nn.Module):
    """Window attention and anchored stripe attention on the two halves of one QKV projection.

    Args:
        dim (int): Channels.
        num_heads_window (int): Heads of the window half.
        num_heads_stripe (int): Heads of the stripe half.
        window_size (int): Window side.
        window_shift (bool): Shift windows.
        stripe_size (tuple): Stripe (height, width) for this layer.
        stripe_shift (bool): Shift stripes.
        down (int): Anchor down-sampling factor.
        stripe_groups (tuple): See :class:`AnchorStripeAttention`.
        qkv_bias (bool): Bias in the QKV projection.
        anchor_pool (str): ``'avgpool'`` or ``'maxpool'`` before the anchor projection.
        attn_drop, proj_drop (float): Dropout on attention weights / after the output projection.
        euclidean_dist (bool): See :class:`WindowAttention`.
        pretrained_window_size, pretrained_stripe_size: See the attention classes.
    """

    def __init__(self, dim, num_heads_window, num_heads_stripe, window_size, window_shift, stripe_size,
                 stripe_shift, down, stripe_groups=(None, None), qkv_bias=True, anchor_pool='avgpool', attn_drop=0.0,
                 proj_drop=0.0, euclidean_dist=False, pretrained_window_size=(0, 0), pretrained_stripe_size=(0, 0)):
        super().__init__()
        if dim % 2 or (dim // 2) % num_heads_window or (dim // 2) % num_heads_stripe:
            raise ValueError(f'embed_dim {dim} must be even and each half divisible by the number of heads '
                             f'({num_heads_window} window, {num_heads_stripe} stripe).')
        self.dim = dim
        self.down = down
        self.anchor_pool = anchor_pool
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        # Anchors: pool by `down`, then project to the stripe half's width.
        self.anchor = nn.Linear(dim, dim // 2)
        self.window_attn = WindowAttention(num_heads_window, window_size, window_shift, attn_drop, euclidean_dist,
                                           pretrained_window_size)
        self.stripe_attn = AnchorStripeAttention(num_heads_stripe, stripe_size, down, stripe_shift, stripe_groups,
                                                 attn_drop, euclidean_dist, pretrained_stripe_size)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        """``x``: ``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        qkv_window, qkv_stripe = self.qkv(x).split(self.dim * 3 // 2, dim=-1)
        pool = F.avg_pool2d if self.anchor_pool == 'avgpool' else F.max_pool2d
        pooled = pool(x.permute(0, 3, 1, 2), self.down).permute(0, 2, 3, 1)
        out = torch.cat([self.window_attn(qkv_window), self.stripe_attn(qkv_stripe, self.anchor(pooled))], dim=-1)
        return self.proj_drop(self.proj(out))


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

    def __init__(self, dim, hidden, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class GRLBlock(nn.Module):
    """One GRL transformer layer (global + regional attention, optional local branch, MLP).

    Args:
        dim (int): Channels.
        index (int): Position in its stage: even layers use horizontal stripes and shifted windows,
            odd layers vertical stripes; stripes shift in layers ``index % 4 in (2, 3)``.
        num_heads_window, num_heads_stripe, window_size, stripe_size, stripe_groups, down,
            stripe_shift: see :class:`GRL`.
        mlp_ratio (float): MLP hidden width / dim.
        local_connection (bool): Add the convolutional local branch.
        drop_path (float): Stochastic depth of both residual branches.
        res_scale (float): Scale of the attention and MLP branches (0.1 for ``init_method='r'``).
        drop (float): Dropout after the output projection and in the MLP.
        **attn_kwargs: qkv_bias, anchor_pool, attn_drop, euclidean_dist, pretrained sizes.
    """

    def __init__(self, dim, index, num_heads_window, num_heads_stripe, window_size, stripe_size, down,
                 stripe_groups=(None, None), stripe_shift=True, mlp_ratio=2.0, local_connection=False, drop_path=0.0,
                 res_scale=1.0, drop=0.0, **attn_kwargs):
        super().__init__()
        horizontal = index % 2 == 0
        stripe = tuple(stripe_size) if horizontal else tuple(stripe_size)[::-1]
        groups = tuple(stripe_groups) if horizontal else tuple(stripe_groups)[::-1]
        self.res_scale = res_scale
        self.attn = MixedAttention(dim, num_heads_window, num_heads_stripe, window_size, window_shift=horizontal,
                                   stripe_size=stripe, stripe_shift=stripe_shift and index % 4 in (2, 3), down=down,
                                   stripe_groups=groups, proj_drop=drop, **attn_kwargs)
        self.norm1 = nn.LayerNorm(dim)
        self.conv = LocalBranch(dim) if local_connection else None
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        out = x + self.res_scale * self.drop_path(self.norm1(self.attn(x)))
        if self.conv is not None:
            out = out + self.conv(x)
        return out + self.res_scale * self.drop_path(self.norm2(self.mlp(out)))


class _ChannelLinear(nn.Linear):
    """A linear map over the channels of a ``(B, C, H, W)`` map (the authors' ``conv_type='linear'``)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _last_conv(conv_type, dim):
    """The conv that closes a stage and the body (the authors' ``build_last_conv``)."""
    if conv_type == '1conv':
        return nn.Conv2d(dim, dim, 3, padding=1)
    if conv_type == '3conv':  # bottleneck to dim / 4, cheaper than one dim x dim 3x3 conv
        return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim // 4, 1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim, 3, padding=1))
    if conv_type == '1conv1x1':
        return nn.Conv2d(dim, dim, 1)
    return _ChannelLinear(dim, dim)


class GRLStage(nn.Module):
    """A stage: ``depth`` GRL layers then the closing conv, with a residual around the whole stage.

    ``checkpointing`` recomputes each layer in the backward pass instead of storing its activations
    (the authors' ``fairscale_checkpoint``; ``offload_to_cpu`` also keeps the layer inputs in CPU memory).
    """

    def __init__(self, dim, depth, drop_path, conv_type='1conv', checkpointing=False, offload_to_cpu=False,
                 **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(GRLBlock(dim, i, drop_path=drop_path[i], **block_kwargs) for i in range(depth))
        self.conv = _last_conv(conv_type, dim)
        self.checkpointing = checkpointing
        self.offload_to_cpu = offload_to_cpu

    def forward(self, x):
        res = x
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                with torch.autograd.graph.save_on_cpu() if self.offload_to_cpu else nullcontext():
                    res = activation_checkpoint(block, res, use_reentrant=False)
            else:
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


# ----------------------------------------------------------------------------------------------
# The authors' checkpoint layout
# ----------------------------------------------------------------------------------------------
# (authors' key fragment, ours) for the four modules whose names differ.
_AUTHORS_RENAMES = (('.attn.qkv.body.', '.attn.qkv.'), ('.attn.anchor.body.0.reduction.', '.attn.anchor.'),
                    ('.conv.cab.', '.conv.body.'))
_AUTHORS_UPSAMPLE = 'upsample.up.'
# Non-learned buffers: the 13 shared tables / indices / masks of the released GRL and the per-layer ones
# of the authors' earlier blocks.
_AUTHORS_BUFFERS = frozenset({'table_w', 'table_sh', 'table_sv', 'index_w', 'index_sh_a2w', 'index_sh_w2a',
                              'index_sv_a2w', 'index_sv_w2a', 'mask_w', 'mask_sh_a2w', 'mask_sh_w2a', 'mask_sv_a2w',
                              'mask_sv_w2a'})
_AUTHORS_LAYER_BUFFERS = ('.relative_coords_table', '.relative_position_index', '.attn_mask')


def map_authors_state_dict(state_dict):
    """Translate a state dict in the authors' layout to ours.

    Keeps the entries under the ``model.`` prefix of their Lightning checkpoints (``model_g.`` in the
    real-world SR GAN checkpoint) without it, dropping the engine's other entries (validation records,
    loss and discriminator networks); drops the non-learned buffers; renames
    ``attn.qkv.body``, ``attn.anchor.body.0.reduction``, ``conv.cab`` and ``upsample.up``. A state
    dict already in our layout is returned unchanged.

    Returns:
        tuple: ``(state_dict, note)``; ``note`` describes what was changed, or is None.
    """
    state_dict = strip_prefix(state_dict)
    keys = list(state_dict)
    prefix = next((p for p in ('model_g.', 'model.') if f'{p}conv_first.weight' in state_dict), '')
    out, renamed, dropped = {}, 0, 0
    for key in keys:
        value = state_dict[key]
        if prefix:
            if not key.startswith(prefix):
                dropped += 1  # the engine's own entries: validation records, loss / discriminator networks
                continue
            key = key[len(prefix):]
        if key in _AUTHORS_BUFFERS or key.endswith(_AUTHORS_LAYER_BUFFERS):
            dropped += 1
            continue
        new = key
        for theirs, ours in _AUTHORS_RENAMES:
            new = new.replace(theirs, ours)
        if new.startswith(_AUTHORS_UPSAMPLE):
            new = 'upsample.' + new[len(_AUTHORS_UPSAMPLE):]
        renamed += new != key
        out[new] = value
    if not (prefix or renamed or dropped):
        return state_dict, None
    parts = [f'{renamed} keys renamed'] + ([f'{dropped} entries that are not GRL weights dropped'] if dropped else [])
    if prefix:
        parts.append(f"prefix '{prefix}' removed")
    return out, f"GRL: mapped the authors' checkpoint layout to ours ({', '.join(parts)})."


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _per_stage(value, n_stages, name):
    if isinstance(value, (list, tuple)):
        if len(value) != n_stages:
            raise ValueError(f'{name} has {len(value)} entries but depths has {n_stages} stages.')
        return [int(v) for v in value]
    return [int(value)] * n_stages


def _preset_config(variant, task, upscale):
    """Architecture + geometry of a variant letter or preset name; returns (config, task, upscale)."""
    letter = str(variant).strip().upper() if variant is not None else 'T'
    if letter not in _VARIANTS:
        preset = resolve_preset(PRESETS, variant, 'GRL variant (T, S, B) or preset')
        letter = preset.kwargs['variant']
        task = task or preset.kwargs['task']
        upscale = preset.scale if upscale is None else upscale
    upscale = 1 if upscale is None else upscale
    task = task or ('sr' if upscale > 1 else 'denoise')
    if task not in _TASKS:
        raise ValueError(f"Unknown GRL task '{task}'; valid choices: {', '.join(_TASKS)}.")
    cfg = dict(_VARIANTS[letter], **_TASKS[task])
    if variant is not None:
        cfg.update(_TEST_OVERRIDES.get((letter, task), {}))
    return cfg, task, upscale


@ARCH_REGISTRY.register()
class GRL(CheckedLoadMixin, nn.Module):
    """GRL for super-resolution (``upscale`` 2/3/4) and restoration (``upscale`` 1).

    Takes the authors' arguments (names, meaning and order of their ``GRL``) and ours (``variant``,
    ``task``, ``num_out_feats``). Unset architecture arguments come from ``variant`` and ``task``
    (default: GRL-T's architecture and the task's geometry), not from the authors' class defaults;
    their option files set every argument.

    Args:
        img_size (int | tuple): The authors' size for precomputed masks; no effect on the output
            (tables and masks are computed for each input size and cached).
        in_channels (int): Input channels.
        out_channels (int): Output channels (default: ``in_channels``).
        embed_dim (int): Channels.
        upscale (int): SR factor; 1 for restoration (default: the preset's, else 1).
        img_range (float): Pixel range the network works in (1.0: inputs in [0, 1]).
        upsampler (str): ``'pixelshuffle'``, ``'pixelshuffledirect'``, ``'nearest+conv'`` (x4 only)
            or ``''`` (restoration). Default: the variant's for SR, ``''`` for ``upscale=1``.
        depths (list[int]): Layers per stage.
        num_heads_window (int | list[int]): Window-attention heads (per stage when a list).
        num_heads_stripe (int | list[int]): Stripe-attention heads (per stage when a list).
        window_size (int): Window side.
        stripe_size (list): Horizontal stripe (height, width); vertical stripes use the transpose.
            An entry may be None where ``stripe_groups`` sets it.
        stripe_groups (list): Per axis None or a number of stripes (stripe length = padded side / g).
        stripe_shift (bool): Shift stripes in layers ``i % 4 in (2, 3)``.
        mlp_ratio (float): MLP expansion.
        qkv_bias (bool): Bias in the QKV projection.
        qkv_proj_type (str): ``'linear'`` (the only projection of the released models).
        anchor_proj_type (str): ``'avgpool'`` or ``'maxpool'`` before the linear anchor projection.
        anchor_one_stage (bool): Must be True (one pooling step, as in every released model).
        anchor_window_down_factor (int): Anchor pooling factor.
        out_proj_type (str): ``'linear'`` or ``'conv2d'``; the authors' efficient block ignores it
            (its output projection is always linear), and so do we.
        local_connection (bool): Convolutional local branch in every layer (GRL-B).
        drop_rate (float): Dropout after the input norm, the output projection and in the MLP.
        attn_drop_rate (float): Dropout on the attention weights.
        drop_path_rate (float): Stochastic depth, rising linearly from 0 to this value.
        norm_layer: ``nn.LayerNorm`` (the only normalisation supported).
        pretrained_window_size, pretrained_stripe_size (list[int]): Normalise the position tables
            for these sizes instead (0, 0: the current sizes).
        conv_type (str): Closing conv of stages and body: ``'1conv'``, ``'3conv'``, ``'1conv1x1'``,
            ``'linear'``.
        init_method (str): ``'n'`` (truncated normal), ``'r'`` (branches scaled by 0.1), ``'l'``
            (layer norms in the stages start at 0), ``'w'`` (stage weights x 0.1), ``'t<k>'``
            (stage linears truncated normal, convs x 0.1), as the authors define them.
        fairscale_checkpoint (bool): Recompute layers in the backward pass (activation checkpointing).
        offload_to_cpu (bool): With checkpointing, keep the saved layer inputs in CPU memory.
        euclidean_dist (bool): The authors' ablation: Euclidean distance instead of cosine similarity.
        variant (str): ``'T'``, ``'S'``, ``'B'`` or a name of :data:`PRESETS`: architecture and, with
            ``task``, geometry of the published models. Explicit arguments override it.
        task (str): ``'sr'``, ``'denoise'`` or ``'deblur'``: window / stripe / anchor sizes of the
            published experiments (default: ``'sr'`` if ``upscale > 1`` else ``'denoise'``).
        num_out_feats (int): Width of the pixelshuffle / nearest+conv tails (64 as the authors).
        **authors_extras: Keys of the authors' model configs their class ignores (``name``,
            ``double_window``, ``stripe_square``, ``separable_conv_act``, ``use_buffer``,
            ``use_efficient_buffer``).
    """

    def __init__(self, img_size=64, in_channels=3, out_channels=None, embed_dim=None, upscale=None, img_range=1.0,
                 upsampler=None, depths=None, num_heads_window=None, num_heads_stripe=None, window_size=None,
                 stripe_size=None, stripe_groups=(None, None), stripe_shift=True, mlp_ratio=2.0, qkv_bias=True,
                 qkv_proj_type='linear', anchor_proj_type='avgpool', anchor_one_stage=True,
                 anchor_window_down_factor=None, out_proj_type='linear', local_connection=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.1, norm_layer=nn.LayerNorm, pretrained_window_size=(0, 0),
                 pretrained_stripe_size=(0, 0), conv_type='1conv', init_method='n', fairscale_checkpoint=False,
                 offload_to_cpu=False, euclidean_dist=False, variant=None, task=None, num_out_feats=64,
                 **authors_extras):
        super().__init__()
        unknown = sorted(set(authors_extras) - _AUTHORS_IGNORED)
        if unknown:
            raise TypeError(f"GRL got unexpected argument(s) {', '.join(unknown)}; see the GRL docstring for the "
                            f'accepted names (ours and the authors\').')
        self._check_choices(qkv_proj_type, anchor_proj_type, anchor_one_stage, out_proj_type, conv_type,
                            init_method, norm_layer)
        cfg, task, upscale = _preset_config(variant, task, upscale)
        for k, v in dict(embed_dim=embed_dim, depths=depths, num_heads_window=num_heads_window,
                         num_heads_stripe=num_heads_stripe, window_size=window_size, stripe_size=stripe_size,
                         anchor_window_down_factor=anchor_window_down_factor,
                         local_connection=local_connection).items():
            if v is not None:
                cfg[k] = v
        if upsampler is None:
            upsampler = cfg['sr_upsampler'] if upscale > 1 else ''
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"Unknown GRL upsampler '{upsampler}'; valid choices: "
                             f"{', '.join(map(repr, _UPSAMPLERS))}.")
        if upscale > 1 and not upsampler:
            raise ValueError(f"upscale={upscale} needs an upsampler: 'pixelshuffle', 'pixelshuffledirect' or "
                             f"'nearest+conv'.")
        if upscale == 1 and upsampler:
            raise ValueError("upscale=1 (restoration) uses upsampler ''.")
        if upsampler == 'nearest+conv' and upscale != 4:
            raise ValueError(f"upsampler 'nearest+conv' is x4 only (the authors' real-world SR tail); got upscale="
                             f'{upscale}.')

        dim = int(cfg['embed_dim'])
        depths = [int(n) for n in cfg['depths']]
        heads_w = _per_stage(cfg['num_heads_window'], len(depths), 'num_heads_window')
        heads_s = _per_stage(cfg['num_heads_stripe'], len(depths), 'num_heads_stripe')
        window = int(cfg['window_size'])
        stripes = [None if s is None else int(s) for s in cfg['stripe_size']]
        groups = [None if g is None else int(g) for g in stripe_groups]
        down = int(cfg['anchor_window_down_factor'])
        if len(stripes) != 2 or len(groups) != 2:
            raise ValueError(f'stripe_size {stripes} and stripe_groups {groups} need two entries (height, width).')
        # The authors pad to the largest of the window, the stripes and (stripe groups x anchor factor).
        self.pad_size = max(window, *(s or 0 for s in stripes), *((g or 0) * down for g in groups))
        for s, g in zip(stripes, groups):
            if g is None and (s is None or self.pad_size % s or s % down):
                raise ValueError(f'stripe_size {stripes} must divide the padding multiple {self.pad_size} (the largest '
                                 f'of window and stripe sizes) and be a multiple of anchor_window_down_factor {down}.')
        if self.pad_size % window:
            raise ValueError(f'window_size {window} must divide the padding multiple {self.pad_size} (the largest of '
                             f'window and stripe sizes).')

        self.cfg = dict(upscale=upscale, in_channels=in_channels, embed_dim=dim, depths=depths,
                        num_heads_window=heads_w, num_heads_stripe=heads_s, window_size=window, stripe_size=stripes,
                        stripe_groups=groups, anchor_window_down_factor=down,
                        local_connection=bool(cfg['local_connection']), upsampler=upsampler, task=task)
        self.img_size = _pair(img_size)
        self.upscale = upscale
        self.upsampler = upsampler
        self.img_range = img_range
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        mean = (0.4488, 0.4371, 0.4040) if in_channels == 3 else (0.0,) * in_channels  # DIV2K RGB mean
        self.register_buffer('mean', torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.norm_start = nn.LayerNorm(dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()  # stochastic depth, linear
        block_kwargs = dict(window_size=window, stripe_size=stripes, stripe_groups=groups, down=down,
                            stripe_shift=stripe_shift, mlp_ratio=mlp_ratio, local_connection=cfg['local_connection'],
                            res_scale=0.1 if init_method == 'r' else 1.0, drop=drop_rate, qkv_bias=qkv_bias,
                            anchor_pool=anchor_proj_type, attn_drop=attn_drop_rate, euclidean_dist=euclidean_dist,
                            pretrained_window_size=tuple(pretrained_window_size),
                            pretrained_stripe_size=tuple(pretrained_stripe_size))
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.layers.append(GRLStage(dim, depth, dpr[sum(depths[:i]):sum(depths[:i + 1])], conv_type=conv_type,
                                        checkpointing=fairscale_checkpoint, offload_to_cpu=offload_to_cpu,
                                        num_heads_window=heads_w[i], num_heads_stripe=heads_s[i], **block_kwargs))
        self.norm_end = nn.LayerNorm(dim)
        self.conv_after_body = _last_conv(conv_type, dim)

        if upsampler == 'pixelshuffle':
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, num_out_feats, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, num_out_feats)
            self.conv_last = nn.Conv2d(num_out_feats, self.out_channels, 3, padding=1)
        elif upsampler == 'pixelshuffledirect':
            # One conv straight to out_channels * scale^2, then PixelShuffle: the lightweight tail.
            self.upsample = nn.Sequential(nn.Conv2d(dim, self.out_channels * upscale ** 2, 3, padding=1),
                                          nn.PixelShuffle(upscale))
        elif upsampler == 'nearest+conv':
            # Real-world SR tail: two nearest x2 steps, each followed by a conv (fewer checkerboard artefacts).
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, num_out_feats, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
            self.conv_up1 = nn.Conv2d(num_out_feats, num_out_feats, 3, padding=1)
            self.conv_up2 = nn.Conv2d(num_out_feats, num_out_feats, 3, padding=1)
            self.conv_hr = nn.Conv2d(num_out_feats, num_out_feats, 3, padding=1)
            self.conv_last = nn.Conv2d(num_out_feats, self.out_channels, 3, padding=1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(dim, self.out_channels, 3, padding=1)
        self.apply(init_transformer_weights)
        self._init_stages(init_method)

    @staticmethod
    def _check_choices(qkv_proj_type, anchor_proj_type, anchor_one_stage, out_proj_type, conv_type, init_method,
                       norm_layer):
        if qkv_proj_type != 'linear':
            raise ValueError(f"qkv_proj_type '{qkv_proj_type}' is not supported: the released GRL models use "
                             f"'linear' (the only choice).")
        if anchor_proj_type not in ('avgpool', 'maxpool'):
            raise ValueError(f"anchor_proj_type '{anchor_proj_type}' is not supported; valid choices: avgpool "
                             f'(the released models), maxpool.')
        if not anchor_one_stage:
            raise ValueError('anchor_one_stage=False (progressive anchor projection) is not supported; the released '
                             'GRL models use True.')
        if out_proj_type not in ('linear', 'conv2d'):
            raise ValueError(f"Unknown out_proj_type '{out_proj_type}'; valid choices: linear, conv2d.")
        if conv_type not in _CONV_TYPES:
            raise ValueError(f"Unknown conv_type '{conv_type}'; valid choices: {', '.join(_CONV_TYPES)}.")
        if not (init_method in ('n', 'r', 'l', 'w') or ('t' in init_method and init_method[-1].isdigit())):
            raise ValueError(f"Unknown init_method '{init_method}'; valid choices: n, r, l, w, t<digit>.")
        if norm_layer not in (nn.LayerNorm, 'LayerNorm', 'nn.LayerNorm'):
            raise ValueError(f'norm_layer {norm_layer!r} is not supported; GRL uses nn.LayerNorm.')

    def _init_stages(self, init_method):
        """The authors' large-model initialisations, applied inside the stages after the default one."""
        if init_method in ('n', 'r'):
            return
        for stage in self.layers:
            for name, m in stage.named_modules():
                in_bias_mlp = 'cpb_mlp' in name
                if init_method == 'l' and isinstance(m, nn.LayerNorm):
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)
                elif init_method == 'w' and isinstance(m, (nn.Linear, nn.Conv2d)) and not in_bias_mlp:
                    m.weight.data.mul_(0.1)
                elif init_method not in ('l', 'w'):
                    if isinstance(m, nn.Linear) and not in_bias_mlp:
                        nn.init.trunc_normal_(m.weight, std=0.1 ** (len(init_method) - 1) * int(init_method[-1]))
                    elif isinstance(m, nn.Conv2d):
                        m.weight.data.mul_(0.1)

    def pad(self, x):
        """Bottom/right padding to a multiple of ``pad_size``: reflection, zeros where it is impossible."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.pad_size, (-w) % self.pad_size
        if ph == 0 and pw == 0:
            return x
        if ph < h and pw < w:  # torch's reflection needs each pad smaller than the side it mirrors
            return F.pad(x, (0, pw, 0, ph), mode='reflect')
        return F.pad(x, (0, pw, 0, ph))

    def forward_features(self, x):
        x = self.pos_drop(self.norm_start(x.permute(0, 2, 3, 1)))
        for layer in self.layers:
            x = layer(x)
        return self.norm_end(x).permute(0, 3, 1, 2)

    def forward(self, x):
        size = x.shape[-2:]
        x = self.pad(x)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if self.upsampler == 'pixelshuffle':
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        elif self.upsampler == 'pixelshuffledirect':
            out = self.upsample(feat)
        elif self.upsampler == 'nearest+conv':
            out = self.conv_before_upsample(feat)
            out = self.lrelu(self.conv_up1(F.interpolate(out, scale_factor=2, mode='nearest')))
            out = self.lrelu(self.conv_up2(F.interpolate(out, scale_factor=2, mode='nearest')))
            out = self.conv_last(self.lrelu(self.conv_hr(out)))
        elif self.in_channels == self.out_channels:
            out = x + self.conv_last(feat)
        else:
            out = self.conv_last(feat)
        out = out / self.img_range + mean[:, :out.shape[1]]
        return crop_to(out, size, self.upscale)

    # -- checkpoints -----------------------------------------------------------------------------
    def map_checkpoint(self, state_dict):
        """``state_dict`` in our key layout (see :func:`map_authors_state_dict`); logs one line when it
        was in the authors' layout. ``load_state_dict`` calls it first (:class:`CheckedLoadMixin`)."""
        state_dict, note = map_authors_state_dict(state_dict)
        if note:
            # BasicSR's logger by name: get_root_logger() would initialise it here, before the run adds its log file.
            logging.getLogger('basicsr').info(note)
        return state_dict

    def config_summary(self):
        c = self.cfg
        return (f"GRL(upscale={c['upscale']}, embed_dim={c['embed_dim']}, depths={c['depths']}, "
                f"local_connection={c['local_connection']}, upsampler='{c['upsampler']}')")

    def checkpoint_hint(self, state_dict):
        wrappers = [k for k in ('params_ema', 'params', 'state_dict') if isinstance(state_dict.get(k), dict)]
        if wrappers:
            return (f"the file's weights are under '{wrappers[0]}': set path:param_key_g: {wrappers[0]} (the authors' "
                    f'.ckpt files: state_dict).')
        w = state_dict.get('conv_first.weight')
        if w is None:
            return None
        stages = {int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')}
        local = any('.conv.body.' in k for k in state_dict)
        if 'conv_up1.weight' in state_dict:
            up = "'nearest+conv'"
        elif 'upsample.0.weight' in state_dict and 'conv_last.weight' not in state_dict:
            up = "'pixelshuffledirect'"
        elif 'upsample.0.weight' in state_dict:
            up = "'pixelshuffle'"
        else:
            up = "'' (restoration)"
        return (f'the checkpoint looks like embed_dim={w.shape[0]}, {len(stages)} stages, '
                f'local_connection={local}, upsampler={up}.')
