"""Parameters and MACs of ECMA-T/S/B/SR against the paper's Table 1.

Run ``python -m ecma_basicsr.analysis.table1``. MACs are counted by mmengine with the large kernels on
their FFT path (FFT counted as zero) and, in the next column, with the FFT formula of
:mod:`ecma_basicsr.analysis.flops` added.
"""
import ecma_basicsr  # noqa: F401
from ecma_basicsr.archs.ecma_arch import ECMA, ECMASR


TABLE1 = {
    # name: (constructor, kwargs, input shape, paper params M, paper MACs G)
    'ECMA-T': (ECMA, dict(variant='T'), (1, 3, 256, 256), 10.5, 15.9),
    'ECMA-S': (ECMA, dict(variant='S'), (1, 3, 256, 256), 31.7, 48.4),
    'ECMA-B': (ECMA, dict(variant='B'), (1, 3, 256, 256), 19.5, 63.0),
    'ECMA-SR': (ECMASR, dict(upscale=4), (1, 3, 180, 320), 1.4, 50.5),
}


def table1_report(names=tuple(TABLE1)):
    """Rows (name, params, paper params, MACs no FFT, MACs with FFT, paper MACs) for Table 1."""
    from ecma_basicsr.analysis.flops import count_macs, count_params
    rows = []
    for name in names:
        cls, kwargs, shape, p_params, p_macs = TABLE1[name]
        net = cls(large_kernel_mode='fft', **kwargs)
        macs, fft = count_macs(net, shape)
        rows.append((name, count_params(net), p_params, macs, macs + fft, p_macs))
    return rows


def main():
    print(f"{'variant':8} {'params':>9} {'paper':>6} {'MACs(noFFT)':>12} {'MACs(+FFT)':>11} {'paper':>6}")
    for name, params, p_params, macs, macs_fft, p_macs in table1_report():
        print(f'{name:8} {params / 1e6:8.3f}M {p_params:5.1f}M {macs / 1e9:11.2f}G {macs_fft / 1e9:10.2f}G '
              f'{p_macs:5.1f}G   params {100 * (params / 1e6 / p_params - 1):+.1f}%  '
              f'MACs {100 * (macs / 1e9 / p_macs - 1):+.1f}% / {100 * (macs_fft / 1e9 / p_macs - 1):+.1f}%')


if __name__ == '__main__':
    main()
