"""Parameters and MACs of ECMA-T/S/B/SR against the paper's Table 1.

Run ``python -m ecma_basicsr.analysis.table1``. The configurations and the published numbers come
from ``PRESETS`` in :mod:`ecma_basicsr.archs.ecma_arch`. MACs are counted by mmengine with the large
kernels on their FFT path, without the FFT work (the papers' counters skip it) and with it
(:func:`~ecma_basicsr.archs.fft_conv.fft_conv_macs`); SR MACs are for the output size the paper
names (1280x720 at x4).
"""
from ecma_basicsr.archs.ecma_arch import PRESETS


def measure(preset, **overrides):
    """(params, MACs without FFT, MACs with FFT) of a preset's network at its ``macs_input`` output size."""
    from basicsr.utils.registry import ARCH_REGISTRY

    from ecma_basicsr.analysis.flops import count_macs, count_params

    net = ARCH_REGISTRY.get(preset.arch)(**dict(preset.kwargs, large_kernel_mode='fft', **overrides))
    h, w = preset.macs_input
    macs, fft = count_macs(net, (1, net.in_channels, h // preset.scale, w // preset.scale))
    return count_params(net), macs, macs + fft


TABLE1 = tuple(name for name, p in PRESETS.items() if p.source == 'ECMA Table 1')


def table1_report(names=TABLE1):
    """Rows (name, params, paper params, MACs no FFT, MACs with FFT, paper MACs) for Table 1."""
    rows = []
    for name in names:
        preset = PRESETS[name]
        params, macs, macs_fft = measure(preset)
        rows.append((name, params, preset.params, macs, macs_fft, preset.macs))
    return rows


def main():
    import ecma_basicsr  # noqa: F401  (registries)

    print(f"{'variant':8} {'params':>9} {'paper':>6} {'MACs(noFFT)':>12} {'MACs(+FFT)':>11} {'paper':>6}")
    for name, params, p_params, macs, macs_fft, p_macs in table1_report():
        print(f'{name:8} {params / 1e6:8.3f}M {p_params / 1e6:5.1f}M {macs / 1e9:11.2f}G {macs_fft / 1e9:10.2f}G '
              f'{p_macs / 1e9:5.1f}G   params {100 * (params / p_params - 1):+.1f}%  '
              f'MACs {100 * (macs / p_macs - 1):+.1f}% / {100 * (macs_fft / p_macs - 1):+.1f}%')


if __name__ == '__main__':
    main()
