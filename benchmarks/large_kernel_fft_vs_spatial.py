"""Large-kernel convolution: FFT against spatial for every layer shape ECMA-T/S/B/SR use, and 'auto'.

For each variant and image size the script collects the distinct (channels, H, W, kernel) of the
network's :class:`~ecma_basicsr.archs.fft_conv.LargeKernelConv` layers (a forward on the meta
device with hooks, so nothing is computed), then times the two exact paths of one such layer at
inference (``torch.inference_mode``, kernel spectrum cached as the module does) in interleaved
rounds and reports the median of each, which one is faster, and which one ``mode='auto'`` picks
when asked fresh. ``auto`` is right when it picks the faster path or when the two are within the
tie margin (default 10%, timings on a shared machine are noisy). The totals weight each shape by
its number of layers: all-FFT, all-spatial, best-of-both and what ``auto`` gives.

Usage::

    python benchmarks/large_kernel_fft_vs_spatial.py                    # T/S/B at 256x256 and 1280x720, SR x4
    python benchmarks/large_kernel_fft_vs_spatial.py --variants T --sizes 256x256 --rounds 3
    python benchmarks/large_kernel_fft_vs_spatial.py --threads 1 --keep-freed-memory --json out.json
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

import ecma_basicsr  # noqa: F401  (installed with the project: pip install -e . / make install)
from ecma_basicsr.archs import fft_conv
from ecma_basicsr.archs.ecma_arch import ECMA, ECMASR
from ecma_basicsr.archs.fft_conv import LargeKernelConv, fft_conv_macs


def layer_shapes(variant, h, w):
    """{(in_ch, out_ch, k, H, W): number of layers} of one ECMA variant at an output size."""
    if variant == 'SR':
        net, shape = ECMASR(upscale=4, large_kernel_mode='spatial'), (1, 3, round(h / 4), round(w / 4))
    else:
        net, shape = ECMA(variant=variant, large_kernel_mode='spatial'), (1, 3, h, w)
    net = net.to('meta').eval()
    seen = {}

    def hook(module, inputs, _):
        x = inputs[0]
        key = (module.in_channels, module.out_channels, module.kernel_size[0], x.shape[-2], x.shape[-1])
        seen[key] = seen.get(key, 0) + 1

    for m in net.modules():
        if isinstance(m, LargeKernelConv):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(shape, device='meta'))
    return seen


def time_paths(cin, cout, k, h, w, rounds):
    """Median seconds of the fft and spatial paths of one layer (interleaved rounds), and auto's pick."""
    torch.manual_seed(0)
    conv = LargeKernelConv(cin, cout, k, mode='fft').eval()
    x = torch.randn(1, cin, h, w)
    times = {'fft': [], 'spatial': []}
    with torch.inference_mode():
        outs = {}
        for mode in times:  # warm-up (plans, spectrum cache) and the exactness check
            conv.mode = mode
            outs[mode] = conv(x)
        err = (outs['fft'] - outs['spatial']).abs().max().item()
        for _ in range(rounds):
            for mode in times:
                conv.mode = mode
                start = time.perf_counter()
                conv(x)
                times[mode].append(time.perf_counter() - start)
        fft_conv._AUTO_CHOICE.clear()
        conv.mode = 'auto'
        conv(x)
        pick = conv.path_for(x)
    return statistics.median(times['fft']), statistics.median(times['spatial']), pick, err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--variants', nargs='+', default=['T', 'S', 'B', 'SR'])
    p.add_argument('--sizes', nargs='+', default=['256x256', '1280x720'], help='output sizes WxH')
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
    p.add_argument('--tie', type=float, default=0.10, help='relative difference counted as a tie for auto')
    p.add_argument('--keep-freed-memory', action='store_true',
                   help='glibc keeps freed memory (no page faults on fresh large tensors), as basicsr bench can')
    p.add_argument('--json', default=None, help='also write the rows here')
    args = p.parse_args(argv)
    if args.keep_freed_memory:
        from ecma_basicsr.bench.measure import keep_freed_memory
        keep_freed_memory()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, rounds {args.rounds}, '
          f'load average {os.getloadavg()[0]:.1f}, keep freed memory: {args.keep_freed_memory}, '
          f'fft_conv from {fft_conv.__file__}')
    cache, rows = {}, []
    header = (f"{'variant':7} {'size':9} {'layers':>6} {'C':>4} {'HxW':>9} {'k':>3} {'plane':>9} "
              f"{'fft ms':>8} {'spat ms':>8} {'faster':>7} {'x':>5} {'auto':>7} {'ok':>3} {'maxdiff':>8} "
              f"{'GMAC fft':>8} {'GMAC sp':>8}")
    print(header)
    totals = {}
    for size in args.sizes:
        w, h = map(int, size.lower().split('x'))
        for variant in args.variants:
            tot = totals.setdefault((variant, size), dict(fft=0.0, spatial=0.0, best=0.0, auto=0.0))
            for (cin, cout, k, hh, ww), n in sorted(layer_shapes(variant, h, w).items()):
                key = (cin, cout, k, hh, ww)
                if key not in cache:
                    cache[key] = time_paths(cin, cout, k, hh, ww, args.rounds)
                t_fft, t_sp, pick, err = cache[key]
                faster = 'fft' if t_fft < t_sp else 'spatial'
                ratio = max(t_fft, t_sp) / min(t_fft, t_sp)
                ok = pick == faster or ratio - 1 <= args.tie
                plane = fft_conv.fft_plane(hh, ww, k)
                g = cin // cout
                row = dict(variant=variant, size=size, layers=n, channels=cout, group_in=g, h=hh, w=ww, k=k,
                           plane=plane, fft_ms=t_fft * 1e3, spatial_ms=t_sp * 1e3, faster=faster, ratio=ratio,
                           auto=pick, auto_ok=ok, maxdiff=err,
                           fft_gmacs=fft_conv_macs(cout, g, hh, ww, k) / 1e9,
                           spatial_gmacs=cout * g * k * k * hh * ww / 1e9)
                rows.append(row)
                tot['fft'] += n * t_fft
                tot['spatial'] += n * t_sp
                tot['best'] += n * min(t_fft, t_sp)
                tot['auto'] += n * (t_fft if pick == 'fft' else t_sp)
                print(f"{variant:7} {size:9} {n:6d} {cout:4d} {f'{hh}x{ww}':>9} {k:3d} {f'{plane[0]}x{plane[1]}':>9} "
                      f"{t_fft * 1e3:8.2f} {t_sp * 1e3:8.2f} {faster:>7} {ratio:5.1f} {pick:>7} "
                      f"{'yes' if ok else 'NO':>3} {err:8.1e} {row['fft_gmacs']:8.3f} {row['spatial_gmacs']:8.3f}",
                      flush=True)
    print('\nper network (all large-kernel layers, ms): all-FFT / all-spatial / best / auto')
    for (variant, size), t in totals.items():
        print(f"  ECMA-{variant:3} {size:9} {t['fft'] * 1e3:9.1f} / {t['spatial'] * 1e3:9.1f} / "
              f"{t['best'] * 1e3:9.1f} / {t['auto'] * 1e3:9.1f}")
    bad = [r for r in rows if not r['auto_ok']]
    print(f"\nauto picked the faster path (or a tie within {100 * args.tie:.0f}%) for {len(rows) - len(bad)} of "
          f'{len(rows)} rows' + ('' if not bad else ': wrong for ' + ', '.join(
              f"{r['channels']}ch {r['h']}x{r['w']} k{r['k']}" for r in bad)))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(rows=rows, totals={f'{v} {s}': t for (v, s), t in totals.items()}), f, indent=1)
    return 0 if not bad else 1


if __name__ == '__main__':
    sys.exit(main())
