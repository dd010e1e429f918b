"""Inference-only rewrites of ECMA, applied by :func:`fuse_for_inference`.

The networks of :mod:`.ecma_arch` are written as the paper describes them (Sec. 3). On a CPU
without autograd their blocks are bound by passes over memory, not by arithmetic: at full
resolution every concatenation, norm, bias, gate and residual streams maps far larger than the
caches. :func:`fuse_for_inference` returns a copy of a network (or rewrites it in place) in which
ECMA's blocks are replaced by modules that compute the same function (within float32 round-off,
held to 1e-5 by ``tests/test_fuse.py``) with fewer passes and with their folded weights computed
once, here:

* :class:`FusedCML`: every LAM writes its Q (Eq. 3) into one buffer, so the reduce conv needs no
  concatenation; the grouped context convs write their group sum into that buffer, and on the
  spatial path a cascaded LAM convolves O'_{i-1} and I'_i apart instead of building their
  interleaved concatenation (Eq. 5); GroupNorm is never written out: its statistics are taken in
  one cache-blocked read of Q (:func:`group_moments`) and its affine, like gamma, folded into the
  reduce conv, which is linear; the residual is added in place; the FFT large kernel reuses its
  spectrum per plane size, takes the spectral product in place and adds its bias on the DC bin.
* :class:`FusedGatedFFN`: the feed-forward part runs over cache-sized tiles of pixels, with the
  LayerNorm affine folded into the first 1x1 conv and gamma into the second; inside a
  :class:`FusedBlock` it writes over the CML's output. With several threads, on maps of
  :data:`SPLIT_PIXELS` or more, the tiles are shared out to threads that each run their ops on
  one thread (:func:`.native_conv.split_torch_ops`): ops on a 512 KB tile are too small to split,
  and every op's threads met at its end.
* :class:`FusedFusion`: the fusion block's 1x1 conv (Sec. 3.3) is folded into the 2x2 stride-2
  transposed conv, so neither the full-resolution concatenation nor the upsampled map exists.
* 1x1 convs go to oneDNN directly on CPU, thin ones on large maps to one GEMM (:func:`pointwise_conv`).
* The CMLs of a network take their Q buffer from one :class:`Workspace`, released after each
  forward, instead of allocating a Q of each level's size per block.
* On a CPU the LAMs' spatial convs (depthwise W, grouped and cascaded W'), the FFN's LayerNorm
  and Q's GroupNorm statistics run in small native kernels (:mod:`.native_conv`): one pass per
  conv that writes straight into Q's slots and its product branch; PyTorch ops where they cannot
  be built.
* Where nothing reads a block's input afterwards (every block of :class:`~.ecma_arch.ECMA`; all but
  the first of ECMASR, whose long skip is the body's input) the residual is added into that input,
  so the references a stage's callers hold to it cost no memory of their own.
* Kernel spectra of the FFT path are kept per image size up to :data:`SPECTRUM_CACHE_BYTES`.

The fused modules hold buffers, not parameters: a fused copy is for inference only (calling
``train()`` on it raises). Count MACs on the unfused network: the fusion block's rewrite also
saves MACs, and the papers count the architecture.
"""
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import native_conv
from .ecma_arch import CML, COMBINE_OPS, ECMA, ECMABlock, ECMAUNet, Fusion, GatedFFN, cascade_context
from .fft_conv import LargeKernelConv, auto_choice, depthwise_terms, fft_plane, kernel_spectrum

TILE_FLOATS = 2 ** 17  # pixels x channels per FFN tile: 512 KB, cache-resident
# a kernel spectrum is kept per image size up to this size; larger ones (a 16-channel k=32 LAM at
# 1280x720: 62 MB per block) cost more memory, held for the network's life, than their rfft costs time
SPECTRUM_CACHE_BYTES = 16 << 20
# the FFN's tiles are shared out to single-threaded workers from this many pixels per map; on smaller
# maps each op's own threads were faster (2 threads, ECMA-B's FFN at 32x32x512: 11.5 vs 16.1 ms split,
# at 256x256x64: 28.9 vs 24.8 ms; at 180x320x256 135 vs 128 ms)
SPLIT_PIXELS = 1 << 15


def pointwise_conv(x, weight, bias=None):
    """A 1x1 convolution; on CPU in float32 it goes straight to oneDNN, or to a GEMM for thin ones.

    PyTorch sends single-threaded 1x1 convs with a small batch to its plain GEMM path, which is
    slower than oneDNN's 1x1 conv (with the bias fused) at ECMA's shapes. oneDNN in turn reorders
    the planes of the map into its blocked layout and back, which costs more than the arithmetic
    when one side has few channels on a large map (:func:`_thin_on_a_large_map`): those run as one
    GEMM per sample on the planes as they are.
    """
    if (x.device.type == 'cpu' and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        if _thin_on_a_large_map(x, weight):
            return _pointwise_gemm(x, weight, bias)
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0, 0], [1, 1], [1, 1], 1)
    return F.conv2d(x, weight, bias)


# thresholds of _thin_on_a_large_map, measured at 1 and 2 threads on the 720p / 360p maps of ECMA's
# blocks: a GEMM took 0.3-0.9x oneDNN's time with <= 32 channels on one side (24->8: 11 vs 29 ms,
# 72->32: 75 vs 104 ms) and 0.96-1.4x with more channels or below 512 x 512 pixels
THIN_CHANNELS = 32
LARGE_MAP_PIXELS = 1 << 18


def _thin_on_a_large_map(x, weight):
    return (min(weight.shape[0], weight.shape[1]) <= THIN_CHANNELS and x.shape[-2] * x.shape[-1] >= LARGE_MAP_PIXELS
            and all(xi.is_contiguous() for xi in x))


def _pointwise_gemm(x, weight, bias):
    c_out, c_in = weight.shape[:2]
    out = x.new_empty(x.shape[0], c_out, *x.shape[-2:])
    w = weight.reshape(c_out, c_in)
    for xi, yi in zip(x, out):
        if bias is None:
            torch.mm(w, xi.view(c_in, -1), out=yi.view(c_out, -1))
        else:
            torch.addmm(bias.view(c_out, 1), w, xi.view(c_in, -1), out=yi.view(c_out, -1))
    return out


def fft_conv_into_spectrum(x, weight, bias, spectrum):
    """:func:`~.fft_conv.fft_grouped_conv` without autograd, with fewer large allocations.

    The spectral product is taken in place, the bias is added to the DC bin (an exact constant
    shift of the output: N1 * N2 * bias before the normalised inverse transform) and the result
    is the top-left H x W view of the inverse transform.
    """
    b, _, h, w = x.shape
    c_out, g, k, _ = weight.shape
    plane = fft_plane(h, w, k)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = torch.fft.rfft2(x.float(), s=plane)
        if g == 1:
            yf = xf.mul_(spectrum.view(c_out, *spectrum.shape[-2:]))
        else:
            yf = (xf.view(b, c_out, g, *xf.shape[-2:]) * spectrum).sum(dim=2)
        if bias is not None:
            yf[..., 0, 0] += bias.float() * (plane[0] * plane[1])
        y = torch.fft.irfft2(yf, s=plane)[..., :h, :w]
    return y.to(x.dtype)


def spatial_conv_into(x, weight, bias, out=None):
    """:func:`~.fft_conv.spatial_grouped_conv` whose group sum is written into ``out`` when given.

    Returns the result, which is ``out`` itself unless the conv has one input per group.
    """
    y = depthwise_terms(x, weight, bias)
    if weight.shape[1] == 1:
        return y
    return torch.sum(y, dim=2, out=out) if out is not None else y.sum(dim=2)


class _Inference(nn.Module):
    """Base of the fused modules: built in eval mode, refuses to be put back into training."""

    def __init__(self):
        super().__init__()
        self.training = False

    def train(self, mode=True):
        if mode:
            raise RuntimeError(f'{type(self).__name__} belongs to an inference-only copy made by fuse_for_inference; '
                               'train the original network and fuse it again.')
        return super().train(False)


class FusedGroupedConv(_Inference):
    """A LAM's W' (:class:`~.fft_conv.GroupedSameConv` or :class:`~.fft_conv.LargeKernelConv`) at inference.

    Keeps the kernel spectrum of the FFT path per plane size, so it is computed once per image size.
    """

    def __init__(self, conv):
        super().__init__()
        self.register_buffer('weight', conv.weight.detach().clone())
        self.register_buffer('bias', conv.bias.detach().clone() if conv.bias is not None else None)
        self.mode = conv.mode if isinstance(conv, LargeKernelConv) else 'spatial'
        self._spectra = {}

    def extra_repr(self):
        return f'kernel={tuple(self.weight.shape)}, mode={self.mode}'

    def _apply(self, fn, recurse=True):
        self._spectra = {}  # a move (device, dtype) invalidates the cached spectra
        return super()._apply(fn, recurse)

    def spectrum(self, x):
        plane = fft_plane(x.shape[-2], x.shape[-1], self.weight.shape[-1])
        if plane in self._spectra:
            return self._spectra[plane]
        spectrum = kernel_spectrum(self.weight, plane)
        if spectrum.numel() * spectrum.element_size() <= SPECTRUM_CACHE_BYTES:
            self._spectra[plane] = spectrum
        return spectrum

    def cascaded(self, prev, raw, out):
        """``forward(cascade_context(prev, raw), out)`` without building the interleaved context.

        Input 0 of every group is O'_{i-1}, the rest are I'_i (:func:`~.ecma_arch.cascade_context`), so on
        the spatial path the conv splits into a depthwise conv of O'_{i-1} plus the grouped conv of I'_i.
        """
        if self.mode != 'spatial' or self.weight.shape[1] < 3:
            return self.forward(cascade_context(prev, raw), out)
        w = self.weight
        if out is not None and native_conv.supports(w, raw, prev, out):
            return native_conv.grouped_conv(raw, w, self.bias, out, prev=prev)
        return spatial_conv_into(raw, w[:, 1:], None, out).add_(depthwise_terms(prev, w[:, :1], self.bias))

    def forward(self, x, out=None):
        path = self.mode
        if path == 'auto':
            path = auto_choice(x, self.weight, lambda: self.spectrum(x))
            if path == 'spatial':  # do not keep a spectrum (up to tens of MB) for a path not taken
                self._spectra.pop(fft_plane(x.shape[-2], x.shape[-1], self.weight.shape[-1]), None)
        if path == 'spatial':
            if out is not None and native_conv.supports(self.weight, x, out):
                return native_conv.grouped_conv(x, self.weight, self.bias, out)
            return spatial_conv_into(x, self.weight, self.bias, out)
        return fft_conv_into_spectrum(x, self.weight, self.bias, self.spectrum(x))


def write_branches(a, b, how, out):
    """The branches of Q (Eq. 3) written into ``out`` (B, branches * c, H, W) without a concatenation."""
    slots = out.split(a.shape[1], dim=1)
    op = COMBINE_OPS[how]
    if op is not None:
        op(a, b, out=slots[0])
    put_into(b, slots[-1])
    slots[-2].copy_(a)


def put_into(t, slot):
    """Copy ``t`` into ``slot`` unless a conv already wrote it there."""
    if slot.data_ptr() != t.data_ptr():
        slot.copy_(t)


class FusedLAM(_Inference):
    """A LAM that writes Q (before its norm) into a slot of the CML's buffer and returns O'."""

    def __init__(self, lam):
        super().__init__()
        self.combine = lam.combine
        self.register_buffer('w', lam.conv_w.weight.detach().clone())
        self.register_buffer('w_bias', lam.conv_w.bias.detach().clone() if lam.conv_w.bias is not None else None)
        self.conv_ctx = FusedGroupedConv(lam.conv_ctx)
        self.out_channels = lam.out_channels
        to_ctx = lam.to_context
        self.register_buffer('ctx_w', to_ctx.weight.detach().clone() if to_ctx is not None else None)
        self.register_buffer('ctx_b', to_ctx.bias.detach().clone() if to_ctx is not None else None)

    def forward(self, x, raw, prev, out):
        """Q of Eq. 3 into ``out``; the context is ``raw`` (I'_i), or Cat(``prev``, ``raw``) when ``prev`` is given."""
        slots = out.split(x.shape[1], dim=1)
        b = self.conv_ctx(raw, out=slots[-1]) if prev is None else self.conv_ctx.cascaded(prev, raw, slots[-1])
        if native_conv.supports(self.w, x, out):
            put_into(b, slots[-1])
            combined = slots[0] if COMBINE_OPS[self.combine] is not None else None
            native_conv.grouped_conv(x, self.w, self.w_bias, slots[-2], other=slots[-1], combined=combined,
                                     combine=self.combine)
        else:
            a = F.conv2d(x, self.w, self.w_bias, padding=self.w.shape[-1] // 2, groups=x.shape[1])
            write_branches(a, b, self.combine, out)
        return pointwise_conv(out, self.ctx_w, self.ctx_b) if self.ctx_w is not None else None


class FusedCML(_Inference):
    """:class:`~.ecma_arch.CML` at inference (see the module docstring)."""

    def __init__(self, cml):
        super().__init__()
        self.splits, self.cascade = list(cml.splits), cml.cascade
        self.register_buffer('expand_w', cml.expand.weight.detach().clone())
        self.register_buffer('expand_b', cml.expand.bias.detach().clone())
        self.lams = nn.ModuleList(FusedLAM(lam) for lam in cml.lams)
        norms = [lam.norm for lam in cml.lams]
        self.groups, self.eps = sum(n.num_groups for n in norms), norms[0].eps
        self.register_buffer('norm_w', torch.cat([n.weight.detach() for n in norms]))
        self.register_buffer('norm_b', torch.cat([n.bias.detach() for n in norms]))
        gamma = cml.gamma.detach().view(-1)
        self.register_buffer('reduce_w', cml.reduce.weight.detach() * gamma.view(-1, 1, 1, 1))
        self.register_buffer('reduce_b', cml.reduce.bias.detach() * gamma)
        self.workspace = None  # shared by the CMLs of one network (fuse_for_inference)
        # set by fuse_for_inference where nothing reads the block's input afterwards: the residual
        # sum then goes into the input itself, so the references a stage's callers keep to its
        # input (a full-resolution map each) share the blocks' memory instead of adding to it
        self.owns_input = False

    def forward(self, x):
        q_all = self._branches(x)
        mean, var = (m.repeat_interleave(q_all.shape[1] // self.groups, dim=1)  # per group -> per channel
                     for m in native_conv.group_moments(q_all, self.groups) or group_moments(q_all, self.groups))
        scale = self.norm_w * (var + self.eps).rsqrt()
        shift = self.norm_b - mean * scale
        # GroupNorm's statistics differ per sample, so does the folded conv
        out = [pointwise_conv(q_all[i:i + 1], *fold_affine_into_pointwise(self.reduce_w, self.reduce_b, s, t))
               for i, (s, t) in enumerate(zip(scale, shift))]
        out = out[0] if len(out) == 1 else torch.cat(out)  # a single image needs no copy
        return x.add_(out) if self.owns_input else out.add_(x)

    def _branches(self, x):
        """Q of every LAM in one buffer; the expanded map and the contexts are freed on return."""
        parts = torch.split(pointwise_conv(x, self.expand_w, self.expand_b), self.splits, dim=1)
        shape = (x.shape[0], self.reduce_w.shape[1], *x.shape[-2:])
        q_all = self.workspace.take(shape, x) if self.workspace is not None else x.new_empty(shape)
        start, prev = 0, None
        for i, lam in enumerate(self.lams):
            prev = lam(parts[2 * i], parts[2 * i + 1], prev if self.cascade else None,
                       q_all[:, start:start + lam.out_channels])
            start += lam.out_channels
        return q_all


def group_moments(x, groups, chunk=2 ** 15):
    """Mean and (biased) variance of each of ``groups`` contiguous channel groups of ``x`` per sample.

    GroupNorm's statistics without its output pass: the map is read once, in column chunks that stay
    in cache, each reduced to its mean and sum of squared deviations (two passes within the chunk, so
    no E[x^2] - E[x]^2 cancellation) and the chunks combined in float64 (Chan et al.'s pairwise rule).

    Returns:
        tuple[Tensor, Tensor]: (B, groups) float32 means and variances.
    """
    rows = x.reshape(x.shape[0] * groups, -1)
    means, m2s, sizes = [], [], []
    for j in range(0, rows.shape[1], chunk):
        part = rows[:, j:j + chunk]
        m = part.mean(1, keepdim=True)
        means.append(m)
        m2s.append(torch.linalg.vector_norm(part - m, dim=1, keepdim=True).square_())
        sizes.append(part.shape[1])
    means, m2s = torch.cat(means, 1).double(), torch.cat(m2s, 1).double()
    n = means.new_tensor(sizes)
    mean = (means * n).sum(1, keepdim=True) / n.sum()
    var = (m2s.sum(1) + ((means - mean).square() * n).sum(1)) / n.sum()
    return mean.view(x.shape[0], groups).to(x.dtype), var.view(x.shape[0], groups).to(x.dtype)


def fold_affine_into_pointwise(weight, bias, scale, shift):
    """Weight and bias of conv1x1(scale * q + shift) as one 1x1 conv of q (a per-channel affine folded in)."""
    w = weight.flatten(1)
    return (w * scale).view_as(weight), torch.addmv(bias, w, shift)


class FusedGatedFFN(_Inference):
    """:class:`~.ecma_arch.GatedFFN` at inference, one cache-sized tile of pixels at a time.

    Every step of the FFN is per pixel, so it can run on column tiles of the (C, H * W) map: the
    input is read once and the output written once. The norm's affine is folded into conv1,
    conv1(w * n + b) = (W1 diag w) n + (W1 b + b1), and gamma into conv2.
    """

    def __init__(self, ffn):
        super().__init__()
        w1 = ffn.conv1.weight.detach().flatten(1)
        gamma = ffn.gamma.detach().view(-1)
        self.eps = ffn.norm.eps
        self.register_buffer('w1', w1 * ffn.norm.weight.detach())
        self.register_buffer('b1', torch.addmv(ffn.conv1.bias.detach(), w1, ffn.norm.bias.detach()).unsqueeze(1))
        self.register_buffer('w2', ffn.conv2.weight.detach().flatten(1) * gamma.view(-1, 1))
        self.register_buffer('b2', (gamma * ffn.conv2.bias.detach()).unsqueeze(1))

    def forward(self, x, out=None):
        """``out`` may be ``x`` itself: each tile is read whole before its result is written."""
        c = x.shape[1]
        if out is None or not (out.is_contiguous() and x.is_contiguous()):
            out = torch.empty_like(x, memory_format=torch.contiguous_format)
        tiles = []
        for src, dst in zip(x, out):
            src, dst = src.reshape(c, -1), dst.view(c, -1)
            norm = native_conv.channel_norm if native_conv.supports_rows(src) else channel_norm
            tiles += [(src[:, cols], dst[:, cols], norm) for cols in column_tiles(src.shape[1], c)]

        def run(lo, hi):
            for tile in tiles[lo:hi]:
                self.tile(*tile)

        if x.shape[-2] * x.shape[-1] >= SPLIT_PIXELS:
            native_conv.split_torch_ops(run, len(tiles), x.numel())
        else:
            run(0, len(tiles))
        return out

    def tile(self, xt, dst, norm):
        """The feed-forward part of one (C, pixels) tile ``xt`` written into ``dst`` (which may be ``xt``)."""
        h = torch.addmm(self.b1, self.w1, norm(xt, self.eps))
        half = h.shape[0] // 2
        torch.add(xt, self.b2, out=dst).addmm_(self.w2, h[:half] * h[half:])


def channel_norm(x, eps):
    """LayerNorm without affine over the rows (channels) of each column of a (C, pixels) tile."""
    y = x - x.mean(0)
    return y.mul_(y.square().mean(0).add_(eps).rsqrt_())


def column_tiles(pixels, rows):
    """Column slices of a (rows, pixels) map, each about :data:`TILE_FLOATS` floats (cache-resident)."""
    tile = max(256, TILE_FLOATS // rows)
    return [slice(j, j + tile) for j in range(0, pixels, tile)]


class FusedBlock(_Inference):
    """:class:`~.ecma_arch.ECMABlock` at inference: its feed-forward part writes over the CML's output,
    which nothing else holds, so a block needs one c-channel map less."""

    def __init__(self, block):
        super().__init__()
        self.cml = FusedCML(block.cml)
        self.ffn = FusedGatedFFN(block.ffn) if isinstance(block.ffn, GatedFFN) else None

    def forward(self, x):
        y = self.cml(x)
        return self.ffn(y, out=y) if self.ffn is not None else y


class FusedFusion(_Inference):
    """:class:`~.ecma_arch.Fusion` with its 1x1 conv folded into the transposed conv.

    The 2x2 stride-2 transposed conv has no overlapping windows, so a 1x1 conv after it is again
    one: Fuse(Cat(TConv(D), E)) = Shuffle(W' D) + W_b E + b, with W' = W_a composed with TConv.
    The full-resolution concatenation and upsampled map disappear; the shuffle becomes the index
    pattern of an in-place add.
    """

    def __init__(self, fusion):
        super().__init__()
        up, fuse = fusion.up, fusion.fuse
        c = fuse.out_channels
        w_a, w_b = fuse.weight.detach().flatten(1).split(c, dim=1)
        c_in = up.weight.shape[0]
        # transposed-conv output pixel (2i + di, 2j + dj) of channel o: row 4o + 2di + dj of a 1x1 conv
        w_up = up.weight.detach().permute(1, 2, 3, 0).reshape(c, 4, c_in)
        self.register_buffer('w_deep', torch.einsum('po,osk->psk', w_a, w_up).reshape(4 * c, c_in, 1, 1))
        self.register_buffer('w_skip', w_b.reshape(c, c, 1, 1).contiguous())
        self.register_buffer('bias', fuse.bias.detach() + w_a @ up.bias.detach())

    def forward(self, deep, skip):
        c = self.w_skip.shape[0]
        out = pointwise_conv(skip, self.w_skip, self.bias)
        n, _, h, w = deep.shape
        up = pointwise_conv(deep, self.w_deep).view(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        out.view(n, c, h, 2, w, 2).add_(up)
        return out


FUSERS = {ECMABlock: FusedBlock, CML: FusedCML, GatedFFN: FusedGatedFFN, Fusion: FusedFusion}


def _replace_children(module):
    for name, child in module.named_children():
        fused = FUSERS.get(type(child))
        if fused is not None:
            setattr(module, name, fused(child))
        else:
            _replace_children(child)


class Workspace:
    """One buffer for the Q maps of every fused CML of a network, released after each forward.

    The blocks run one after another and each needs Q (9c/4 channels) only until its reduce conv,
    so one buffer sized for the largest level serves them all: with glibc keeping freed memory,
    Q maps of changing sizes allocated and freed per block fragmented the heap (ECMA-B 1280x720).
    """

    def __init__(self):
        self.buffer = None

    def take(self, shape, like):
        """A tensor of ``shape`` (``like``'s dtype and device) over the start of the shared buffer."""
        numel = math.prod(shape)
        b = self.buffer
        if b is None or b.numel() < numel or b.dtype != like.dtype or b.device != like.device:
            self.buffer = None  # free the smaller one before allocating
            self.buffer = b = like.new_empty(numel)
        return b[:numel].view(shape)

    def release(self, *args):
        """Forward hook of the network: the buffer lives for one forward only."""
        self.buffer = None


def _bodies_whose_input_is_kept(net):
    """The U-Net bodies whose input is read again after the body ran: by the caller of a body fused on
    its own, by ECMASR's long skip. Only :class:`~.ecma_arch.ECMA` discards its intro features."""
    if type(net) is ECMA:
        return []
    return [m for m in net.modules() if isinstance(m, ECMAUNet)]


def fuse_for_inference(net, inplace=False):
    """The network with ECMA's blocks replaced by their inference-only fused forms.

    Args:
        net (nn.Module): Any network. Networks without ECMA blocks are returned unchanged.
        inplace (bool): Rewrite ``net`` itself instead of a copy (saves the copy's memory; the
            network can then no longer be trained).

    Returns:
        nn.Module: The fused network, in eval mode, with no parameter requiring grad. The
        unfused ``net`` keeps its parameters and still loads state dicts as before.
    """
    if not any(type(m) in FUSERS for m in net.modules()):
        return net
    target = net if inplace else copy.deepcopy(net)
    with torch.no_grad():
        _replace_children(target)
    workspace = Workspace()
    for m in target.modules():
        if isinstance(m, FusedCML):
            m.workspace, m.owns_input = workspace, True
    for body in _bodies_whose_input_is_kept(target):
        body.encoders[0][0].cml.owns_input = False
    target.register_forward_hook(workspace.release)
    target.requires_grad_(False)
    return target.eval()
