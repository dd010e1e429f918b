"""``basicsr bench``: compare networks on this machine in one run (see :mod:`ecma_basicsr.bench`).

Examples::

    basicsr bench                                  # every preset at 256x256 and 1280x720, CPU
    basicsr bench --nets ECMA-T NAFNet-GoPro-width32 --sizes 1280x720 --repeats 10
    basicsr bench --preset table10 --device cuda   # ECMA Table 10: 1280x720, average of 10 runs
    basicsr bench --nets IMDN-x4@../shared/weights/IMDN_x4.pth ECMA-SR \\
        --testset Set5=sr:../shared/data/Set5 --sizes 1280x720
    basicsr bench --nets 'mine=ECMA:variant=T,large_kernel_mode=spatial' \\
        options/table2_gopro/NAFNet_GoPro-width32_test.yml
"""
import argparse
import os
import re
import sys

from . import BenchError

# --compile: the modes each network is timed in (one results row per mode)
COMPILE_MODES = {None: ('eager', ), 'only': ('compiled', ), 'both': ('eager', 'compiled')}
PRESETS = {
    # ECMA Table 10: inference time at 1280x720, average of 10 runs
    'table10': dict(sizes=['1280x720'], repeats=10, warmup=2, statistic='mean',
                    nets=['ECMA-T', 'ECMA-S', 'ECMA-B', 'NAFNet-GoPro-width32', 'NAFNet-GoPro-width64']),
}


def parse_size(text):
    m = re.fullmatch(r'\s*(\d+)\s*[xX*]\s*(\d+)\s*', text)
    if not m:
        raise BenchError(f"--sizes '{text}' must be WIDTHxHEIGHT, e.g. 256x256 or 1280x720.")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 1 or h < 1:
        raise BenchError(f"--sizes '{text}': width and height must be positive.")
    return h, w


def build_parser():
    p = argparse.ArgumentParser(
        prog='basicsr bench', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Params, MACs (FFT counted separately), latency, peak memory, achieved fraction of the '
                    "machine's GEMM throughput and PSNR/SSIM for networks, in one run.",
        epilog=__doc__.split('Examples::', 1)[1])
    p.add_argument('--nets', nargs='+', default=['all'], metavar='SPEC',
                   help="presets (ECMA-T, NAFNet-GoPro-width32, SwinIR-light-x4, ...; groups 'paper', 'all'), "
                        "ARCH:k=v,... or option files; optional LABEL= prefix and @CHECKPOINT suffix. "
                        "--list shows the presets.")
    p.add_argument('--weights', nargs='+', default=[], metavar='LABEL=PATH', help='checkpoints by row label')
    p.add_argument('--testset', nargs='+', default=[], metavar='NAME=TASK:PATH',
                   help='TASK: sr (Y PSNR/SSIM, crop=scale), deblur / denoise (RGB pairs, no crop), awgn<sigma> '
                        '(seeded Gaussian noise on clean images)')
    p.add_argument('--sizes', nargs='+', default=['256x256', '1280x720'], metavar='WxH',
                   help='output sizes (SR networks get size / scale as input); small to large')
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda' ('cuda:1', ...)")
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: os.cpu_count())')
    p.add_argument('--warmup', type=int, default=1, help='untimed runs before timing (default 1)')
    p.add_argument('--repeats', type=int, default=5, help='timed runs per size (default 5)')
    p.add_argument('--rounds', type=int, default=1,
                   help='time every network N times, interleaved (A B C A B C ...), and pool the timed runs of all '
                        'rounds, so a slow spell of a shared machine hits every network alike; MACs and test '
                        'sets are measured in the first round only (default 1)')
    p.add_argument('--budget', type=float, default=120.0,
                   help='seconds per network and size; a size predicted to need more for one forward is reported '
                        'as over budget (default 120; 0 = no limit)')
    p.add_argument('--eval-budget', type=float, default=300.0, help='seconds per network and test set (default 300)')
    p.add_argument('--preset', choices=sorted(PRESETS), help='table10: ECMA Table 10 protocol (1280x720, average of '
                   '10 runs, ECMA-T/S/B and NAFNet-GoPro-width32/w64 unless --nets is given)')
    p.add_argument('--keep-freed-memory', action='store_true',
                   help="workers keep freed memory (glibc mallopt) instead of mapping large tensors fresh each time; "
                        'on VMs where page faults are slow this changes 1280x720 latencies by up to 2x, for every '
                        'network alike (what jemalloc/tcmalloc preloading does)')
    p.add_argument('--compile', nargs='?', const='only', choices=[k for k in COMPILE_MODES if k],
                   help='time torch.compile (inductor, frozen weights) of every network as built, compiled once per '
                        "size, in rows marked '(compiled)'; the compiling first forward is reported apart, not timed. "
                        "'--compile both' also times every network eager, interleaved with its compiled row")
    p.add_argument('--no-macs', action='store_true', help='skip the mmengine MAC count (it traces one more forward)')
    p.add_argument('--limit-images', type=int, default=None, help='evaluate at most this many images per test set')
    p.add_argument('--seed', type=int, default=0, help='seed of the random inputs and of the awgn noise')
    p.add_argument('--gemm-n', type=int, default=1536, help='matrix side of the GEMM ceiling probe')
    p.add_argument('--plot-size', default=None, metavar='WxH',
                   help='size whose MACs the PSNR plots use (default: as the papers, 1280x720 for SR sets and '
                        '256x256 otherwise, when measured)')
    p.add_argument('--out', default='bench_out', help='output folder (default bench_out/, git-ignored)')
    p.add_argument('--list', action='store_true', help='list the network presets and exit')
    return p


def list_presets():
    from .networks import GROUPS, presets
    for label, p in presets().items():
        print(f"{label:22} {p.task:8} {p.arch}: {', '.join(f'{k}={v}' for k, v in p.kwargs.items())}")
    for name, labels in GROUPS.items():
        print(f"group {name}: {' '.join(labels)}")


def main(argv=None):
    """Entry point of ``basicsr bench``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.list:
        list_presets()
        return 0
    import ecma_basicsr  # noqa: F401

    from .networks import expand_specs, validate
    from .report import write_all
    from .runner import BenchConfig, run_all, size_key
    from .testsets import parse_testset

    nets, sizes, repeats, warmup, statistic = args.nets, args.sizes, args.repeats, args.warmup, 'median'
    if args.preset:
        preset = PRESETS[args.preset]
        explicit = set(a.split('=')[0] for a in argv if a.startswith('--'))
        nets = nets if '--nets' in explicit else preset['nets']
        sizes = sizes if '--sizes' in explicit else preset['sizes']
        repeats = repeats if '--repeats' in explicit else preset['repeats']
        warmup = warmup if '--warmup' in explicit else preset['warmup']
        statistic = preset['statistic']
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise BenchError(f"--device {args.device}: CUDA is not available on this machine; use --device cpu.")
    elif args.device != 'cpu':
        raise BenchError(f"--device '{args.device}' is not supported; use cpu or cuda[:index].")
    if repeats < 1 or warmup < 0 or args.rounds < 1:
        raise BenchError('--repeats and --rounds must be >= 1 and --warmup >= 0.')
    size_list = sorted((parse_size(s) for s in sizes), key=lambda hw: hw[0] * hw[1])
    specs = expand_specs(nets, args.weights)
    testsets = [parse_testset(t, seed=args.seed, limit=args.limit_images) for t in args.testset]
    if len({t.name for t in testsets}) != len(testsets):
        raise BenchError('two --testset entries have the same NAME; give each its own.')
    for spec in specs:
        validate(spec)
    plot_size = size_key(parse_size(args.plot_size)) if args.plot_size else None
    cfg = BenchConfig(sizes=size_list, device=args.device, threads=args.threads or os.cpu_count() or 1,
                      warmup=warmup, repeats=repeats, budget=args.budget or 0, eval_budget=args.eval_budget or 0,
                      gemm_n=args.gemm_n, count_macs=not args.no_macs, keep_freed_memory=args.keep_freed_memory,
                      seed=args.seed, statistic=statistic, rounds=args.rounds, modes=COMPILE_MODES[args.compile])
    load = _load()
    if load is not None and cfg.threads > 1 and load > (os.cpu_count() or 1):
        print(f'warning: load average {load:.1f} on {os.cpu_count()} cores: other processes compete for the CPU, and '
              f'with {cfg.threads} threads every op waits for its slowest thread. Timings will be noisy and '
              'slow; --threads 1 is steadier on a shared machine.', file=sys.stderr)
    info = dict(load_start=load)
    rows, run_info = run_all(specs, testsets, cfg, log=lambda m: print(m, flush=True))
    info.update(run_info, load_end=_load())
    paths = write_all(args.out, rows, cfg, info, argv, testsets, plot_size)
    print('wrote ' + ', '.join(paths))
    with open(paths[1]) as f:
        print(f.read())
    return 0


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
