"""Large-kernel convolution through the FFT, exact against the spatial convolution.

ECMA applies the large kernel of its first LAM in the frequency domain (paper Sec. 3.2, last
paragraph of "Cascaded Multiscale Learning"). :class:`LargeKernelConv` is a drop-in
``nn.Conv2d`` (same parameters, same state-dict keys, stride 1, "same" zero padding, grouped
with one output channel per group) whose forward runs one of two exact paths:

* ``spatial``: ``F.conv2d`` on the zero-padded input;
* ``fft``: ``rfft2`` of the input times the conjugate spectrum of the kernel, ``irfft2`` back.

The FFT computes a *circular* cross-correlation. Padding to ``N >= H + k // 2`` (then rounding
up to a size with only the factors 2, 3, 5, 7) and storing the kernel rolled by its left
padding makes the first ``H x W`` outputs equal the zero-padded linear correlation, without
padding the input by the full ``k - 1``. Both paths agree to float32 round-off (tested for
k in 8..32 and odd/even sizes). The FFT always runs in float32, autocast or not.

``auto`` measures both paths once per (device, dtype, shape, kernel) and keeps the faster:
on CPUs a depthwise ``conv2d`` often beats the FFT at small spatial sizes.
"""
import copy
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ('fft', 'spatial', 'auto')
_AUTO_CHOICE = {}


def fast_fft_size(n):
    """Smallest integer >= n whose only prime factors are 2, 3, 5 and 7 (fast for pocketfft/cuFFT)."""
    n = max(int(n), 1)
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def same_padding(k):
    """(before, after) zero padding that keeps the size for a k x k kernel (PyTorch 'same')."""
    return (k - 1) // 2, k // 2


def fft_plane(h, w, k):
    """FFT plane (N1, N2) that holds the linear correlation of an h x w map with a k x k kernel."""
    return fast_fft_size(h + k // 2), fast_fft_size(w + k // 2)


def kernel_spectrum(weight, plane):
    """Conjugate rfft2 of the kernel, rolled so the circular correlation lands at offset 0.

    Args:
        weight (Tensor): (C_out, g, k, k) kernel.
        plane (tuple[int]): FFT plane (N1, N2).

    Returns:
        Tensor: complex (C_out, g, N1, N2 // 2 + 1).
    """
    k = weight.shape[-1]
    before = same_padding(k)[0]
    n1, n2 = plane
    if k > min(n1, n2):  # a plane smaller than the kernel: pad (crop) and roll the whole kernel
        padded = F.pad(weight.float(), (0, n2 - k, 0, n1 - k))
        return torch.fft.rfft2(torch.roll(padded, shifts=(-before, -before), dims=(-2, -1))).conj()
    # rfft2 transforms the rows, then the columns; only the kernel's k rows of the plane are not
    # zero, so only they need the row transform (the same numbers, about half the work)
    rows = torch.fft.rfft(torch.roll(F.pad(weight.float(), (0, n2 - k)), shifts=-before, dims=-1), dim=-1)
    plane_rows = rows.new_zeros(*rows.shape[:-2], n1, rows.shape[-1])
    plane_rows[..., :k - before, :] = rows[..., before:, :]  # the roll by -before along the height
    plane_rows[..., n1 - before:, :] = rows[..., :before, :]
    return torch.fft.fft(plane_rows, dim=-2).conj()


def fft_grouped_conv(x, weight, bias=None, spectrum=None):
    """'Same' zero-padded grouped conv (one output per group) computed with rfft2/irfft2.

    Args:
        x (Tensor): (B, C_out * g, H, W).
        weight (Tensor): (C_out, g, k, k).
        bias (Tensor | None): (C_out,).
        spectrum (Tensor | None): precomputed :func:`kernel_spectrum` for this plane.

    Returns:
        Tensor: (B, C_out, H, W) in the dtype of ``x``.
    """
    b, _, h, w = x.shape
    c_out, g, k, _ = weight.shape
    plane = fft_plane(h, w, k)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = torch.fft.rfft2(x.float(), s=plane)
        wf = kernel_spectrum(weight, plane) if spectrum is None else spectrum
        prod = xf.view(b, c_out, g, *xf.shape[-2:]) * wf
        yf = prod.sum(dim=2) if g > 1 else prod.squeeze(2)
        y = torch.fft.irfft2(yf, s=plane)[..., :h, :w]
        if bias is not None:
            y = y + bias.float().view(1, -1, 1, 1)
    return y.to(x.dtype)


def spatial_grouped_conv(x, weight, bias=None):
    """The same operation as :func:`fft_grouped_conv` with ``F.conv2d``.

    With several inputs per group it runs as a depthwise conv over all inputs followed by a sum
    over each group (:func:`depthwise_terms`).
    """
    y = depthwise_terms(x, weight, bias)
    return y if weight.shape[1] == 1 else y.sum(dim=2)


def depthwise_terms(x, weight, bias=None):
    """The terms of the grouped 'same' conv before the sum over each group's inputs.

    Returns (B, C_out, g, H, W) for g inputs per group, or the conv's output (B, C_out, H, W) when g
    is 1. A grouped conv with 3-4 inputs per group falls back to a slow generic path on CPUs (2-3x
    slower forward + backward at ECMA's shapes), while depthwise kernels are fast: same arithmetic.
    The bias rides on the first input of each group, so it costs no pass of its own.
    """
    c_out, g, k, _ = weight.shape
    before, after = same_padding(k)
    if before == after:  # odd k: the convolution pads by itself, no padded copy of x
        pad = before
    else:
        x, pad = F.pad(x, (before, after, before, after)), 0
    if g == 1:
        return F.conv2d(x, weight, bias, padding=pad, groups=c_out)
    dw_bias = F.pad(bias.view(c_out, 1), (0, g - 1)).flatten() if bias is not None else None
    y = F.conv2d(x, weight.reshape(c_out * g, 1, k, k), dw_bias, padding=pad, groups=c_out * g)
    return y.view(y.shape[0], c_out, g, *y.shape[-2:])


def _time_pair(fn_a, fn_b, rounds=3, clear_margin=3.0):
    """Best-of-``rounds`` seconds of two functions, run interleaved after one warm-up each.

    Stops after a round in which one is ``clear_margin`` times slower than the other: more rounds
    cannot change the verdict, and at 1280x720 one spatial k=32 pass costs seconds.
    """
    best = [float('inf'), float('inf')]
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in (fn_a, fn_b):
        fn()  # warm-up (allocations, FFT plans)
    for _ in range(rounds):
        for i, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
        if max(best) > clear_margin * min(best):
            break
    return best


def auto_choice(x, weight, spectrum=None):
    """'fft' or 'spatial', whichever is faster for this input/kernel; measured once, cached.

    The FFT path is timed as it will run: with ``spectrum`` (a cached kernel spectrum, as the
    fused inference network keeps one) when given; ``spectrum`` may also be a function returning
    it, called only when a measurement is needed. Both paths are timed interleaved, best of three,
    so a burst of load from other processes is less likely to decide.
    """
    key = (x.device.type, x.dtype, tuple(x.shape), x.is_contiguous(), tuple(weight.shape), spectrum is not None,
           torch.get_num_threads())
    if key not in _AUTO_CHOICE:
        if callable(spectrum):
            spectrum = spectrum()
        with torch.no_grad():
            xd, wd = x.detach(), weight.detach()
            t_fft, t_spatial = _time_pair(lambda: fft_grouped_conv(xd, wd, spectrum=spectrum),
                                          lambda: spatial_grouped_conv(xd, wd))
        _AUTO_CHOICE[key] = 'fft' if t_fft < t_spatial else 'spatial'
    return _AUTO_CHOICE[key]


class GroupedSameConv(nn.Conv2d):
    """A k x k conv with one output channel per group, stride 1 and 'same' zero padding.

    Computed by :func:`spatial_grouped_conv`; parameters and state-dict keys are nn.Conv2d's.
    """

    def __init__(self, in_channels, out_channels, kernel_size, bias=True):
        if in_channels % out_channels:
            raise ValueError(f'in_channels ({in_channels}) must be a multiple of out_channels ({out_channels}).')
        super().__init__(in_channels, out_channels, kernel_size, padding=0, groups=out_channels, bias=bias)

    def forward(self, x):
        return spatial_grouped_conv(x, self.weight, self.bias)


class LargeKernelConv(GroupedSameConv):
    """:class:`GroupedSameConv` that can also run through the FFT.

    Args:
        in_channels (int): Input channels, a multiple of ``out_channels``.
        out_channels (int): Output channels (= groups).
        kernel_size (int): k; even sizes pad one more on the bottom/right, like PyTorch 'same'.
        mode (str): 'fft', 'spatial' or 'auto' (see module docstring). Results are identical.
    """

    def __init__(self, in_channels, out_channels, kernel_size, mode='auto', bias=True):
        if mode not in MODES:
            raise ValueError(f"large_kernel_mode must be one of {MODES}, got '{mode}'.")
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        self.mode = mode

    def extra_repr(self):
        return super().extra_repr() + f', mode={self.mode}'

    def path_for(self, x):
        """The path a forward on ``x`` takes ('fft' or 'spatial'); 'auto' measures once per shape."""
        return self.mode if self.mode != 'auto' else auto_choice(x, self.weight)

    def forward(self, x):
        if self.path_for(x) == 'spatial':
            return spatial_grouped_conv(x, self.weight, self.bias)
        return fft_grouped_conv(x, self.weight, self.bias)


def pin_large_kernel_paths(net, x):
    """``net``, or a copy of it, whose 'auto' large-kernel convs take the path 'auto' picks for input ``x``.

    A traced forward (``torch.compile``) cannot time the two paths as 'auto' does; both compute the
    same function, so fixing the measured choice per input size changes only the speed. ``net`` itself
    is returned when it has no 'auto' conv, else an eval-mode copy (``net`` keeps 'auto').
    """
    if not any(isinstance(m, LargeKernelConv) and m.mode == 'auto' for m in net.modules()):
        return net
    target = copy.deepcopy(net).eval()
    chosen = {}

    def record(conv, args):  # a pre-hook's return value would replace the input: return None
        chosen.setdefault(conv, conv.path_for(args[0]))

    convs = [m for m in target.modules() if isinstance(m, LargeKernelConv) and m.mode == 'auto']
    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        with torch.no_grad():
            target(x)
    finally:
        for h in hooks:
            h.remove()
    for m in convs:
        m.mode = chosen.get(m, m.mode)
    return target


# ------------------------------------------------------------------------------------------------
# Cost of the FFT path, in real multiply-accumulates (the papers' "FLOPs")
# ------------------------------------------------------------------------------------------------
def transform_macs(points, real):
    """Real MACs of one FFT over ``points`` samples (the product of the transformed sizes).

    N log2 N for a transform of a real signal (``rfft*`` / ``irfft*``: half of the 2 N log2 N of
    a complex radix-2 FFT), 2 N log2 N for a complex one.
    """
    if points <= 1:
        return 0.0
    return (1.0 if real else 2.0) * points * math.log2(points)


def spectral_product_macs(complex_elements):
    """Real MACs of an element-wise complex product with ``complex_elements`` outputs (4 each)."""
    return 4.0 * complex_elements


def fft_conv_macs(c_out, group_in, h, w, k, batch=1):
    """Real MACs of one :func:`fft_grouped_conv` call on a (batch, c_out * group_in, h, w) input.

    ``c_out * group_in`` forward transforms of the input, the spectral product over
    ``c_out * group_in`` planes of N1 x (N2 // 2 + 1) bins, and ``c_out`` inverse transforms; the
    kernel spectrum depends on the weights only (computed once at inference) and is not counted.
    The MAC counter (:mod:`ecma_basicsr.analysis.flops`) counts a traced call the same way.
    """
    n1, n2 = fft_plane(h, w, k)
    one = transform_macs(n1 * n2, real=True)
    bins = n1 * (n2 // 2 + 1)
    return batch * (c_out * group_in * one + spectral_product_macs(c_out * group_in * bins) + c_out * one)
