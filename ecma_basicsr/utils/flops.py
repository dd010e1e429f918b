"""Parameter and MAC counting, with the FFT work of large-kernel convolutions made visible.

The papers' "FLOPs" are multiply-accumulates (MACs) as counted by fvcore / mmengine. mmengine
counts ``rfft2``/``irfft2`` as zero, so the FFT path of :class:`LargeKernelConv` would be free.
We report it separately with this formula (real MACs):

* a real-input 2-D FFT (``rfft2``) or its inverse over an N1 x N2 plane: N log2 N with
  N = N1 * N2 (half of the 2 N log2 N of a complex radix-2 FFT);
* the pointwise product with the kernel spectrum: 4 real MACs per complex bin,
  N1 * (N2 // 2 + 1) bins per input channel;
* the kernel's own spectrum is cached at inference and not counted.
"""
import math

import torch

from ecma_basicsr.archs.fft_conv import LargeKernelConv, fft_plane


def fft_conv_macs(c_out, group_in, h, w, k, batch=1):
    """Real MACs of one :func:`fft_grouped_conv` call (see module docstring)."""
    n1, n2 = fft_plane(h, w, k)
    n = n1 * n2
    one_fft = n * math.log2(n)
    bins = n1 * (n2 // 2 + 1)
    per_image = c_out * group_in * (one_fft + 4 * bins) + c_out * one_fft
    return batch * per_image


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def count_macs(model, input_shape):
    """(MACs without FFT work, FFT MACs by the formula) for one forward of ``input_shape``.

    Large-kernel convolutions are forced onto their FFT path for the count, as in the paper.
    """
    from mmengine.analysis import FlopAnalyzer

    convs = [m for m in model.modules() if isinstance(m, LargeKernelConv)]
    saved = [m.mode for m in convs]
    fft_total = [0.0]

    def hook(module, inputs, _):
        x = inputs[0]
        c_out, g = module.weight.shape[:2]
        fft_total[0] += fft_conv_macs(c_out, g, x.shape[-2], x.shape[-1], module.kernel_size[0], x.shape[0])

    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        for m in convs:
            m.mode = 'fft'
        x = torch.zeros(input_shape)
        with torch.no_grad():
            analyzer = FlopAnalyzer(model.eval(), (x, ))
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = analyzer.total()
            fft_total[0] = 0.0
            model(x)
    finally:
        for m, mode in zip(convs, saved):
            m.mode = mode
        for h in handles:
            h.remove()
    return float(total), fft_total[0]
