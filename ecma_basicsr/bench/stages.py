"""Where a network's time goes: latency, MACs and achieved MAC/s per stage of one forward.

``basicsr bench`` says how fast a network is; this says why. Two networks with the same MACs can
differ by a quarter in latency on a CPU when one spends its MACs at full resolution on 64
channels (thin 1x1 GEMMs, maps far larger than the caches) and the other at 1/8 resolution on
512 channels. The stages are the model's children, with ``nn.ModuleList`` containers and U-Net
bodies (modules that hold one) opened up: ECMA's ``body.encoders.0`` ... ``body.fusions.2``,
NAFNet's ``encoders.0`` ... ``middle_blks``. Each stage is timed by forward hooks (one thread is
advised: the hooks time wall clock), its MACs come from :func:`~ecma_basicsr.analysis.flops.analyze_macs`
(FFT work included) and the GEMM probe of :func:`~ecma_basicsr.bench.measure.gemm_throughput`
gives the machine's ceiling in the same run.

Usage::

    python -m ecma_basicsr.bench.stages --nets ECMA-B NAFNet-GoPro-width64 --size 1280x720 --threads 1 \
        --keep-freed-memory
"""
import argparse
import statistics
import time
from collections import defaultdict

import torch
import torch.nn as nn

from . import BenchError


def stages(model):
    """(name, module) of each stage, in registration order (see the module docstring)."""
    prefix = ''
    found = []

    def opens(m):
        return isinstance(m, nn.ModuleList) or any(isinstance(c, nn.ModuleList) for c in m.children())

    def walk(pre, module):
        for name, child in module.named_children():
            if opens(child):
                walk(f'{pre}{name}.', child)
            else:
                found.append((f'{pre}{name}', child))

    walk(prefix, model)
    return found


def time_stages(model, x, repeats=3, warmup=1):
    """Median seconds per stage over ``repeats`` forwards of ``x`` (after ``warmup``), under inference mode.

    Returns:
        tuple: ({stage name: seconds}, {stage name: input shape}, whole-forward seconds).
    """
    parts = stages(model)
    per_run, shapes, started, handles = defaultdict(float), {}, {}, []
    for name, module in parts:
        def pre(m, args, name=name):
            if args and torch.is_tensor(args[0]):
                shapes.setdefault(name, tuple(args[0].shape))
            started[name] = time.perf_counter()

        def post(m, args, out, name=name):
            per_run[name] += time.perf_counter() - started[name]

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    runs, totals = defaultdict(list), []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                per_run.clear()
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    totals.append(time.perf_counter() - start)
                    for name, _ in parts:
                        runs[name].append(per_run.get(name, 0.0))
    finally:
        for h in handles:
            h.remove()
    return {n: statistics.median(runs[n]) for n, _ in parts}, shapes, statistics.median(totals)


def stage_macs(model, shape):
    """{stage name: MACs (FFT included)} and the whole model's MACs, for one forward of ``shape``."""
    from ecma_basicsr.analysis.flops import analyze_macs

    from .measure import mapped_large_allocations
    with mapped_large_allocations():
        count = analyze_macs(model, shape)
    return {n: float(count.by_module.get(n, 0)) for n, _ in stages(model)}, count.total


def stage_table(label, seconds, shapes, total_s, macs, total_macs, gemm):
    """Markdown table: one row per stage, then the forward outside the stages and the whole."""
    lines = [f'### {label}', '',
             '| stage | input | GMACs | ms | share of time | GMAC/s | % GEMM |',
             '| --- | --- | --- | --- | --- | --- | --- |']

    def row(name, shape, m, s):
        rate = m / s / 1e9 if s > 0 and m else None
        cells = [name, shape, f'{m / 1e9:.2f}', f'{s * 1e3:.0f}', f'{100 * s / total_s:.1f}%',
                 f'{rate:.1f}' if rate else '', f'{100 * rate * 1e9 / gemm:.0f}%' if rate else '']
        lines.append('| ' + ' | '.join(cells) + ' |')

    for name, s in seconds.items():
        shape = shapes.get(name)
        row(name, 'x'.join(map(str, shape[1:])) if shape else '(not run)', macs.get(name, 0.0), s)
    row('(outside the stages)', '', total_macs - sum(macs.values()), max(0.0, total_s - sum(seconds.values())))
    row('**whole forward**', '', total_macs, total_s)
    return '\n'.join(lines)


def main(argv=None):
    from .cli import parse_size
    from .measure import gemm_throughput, keep_freed_memory
    from .networks import build, expand_specs
    from .worker import input_size

    p = argparse.ArgumentParser(prog='python -m ecma_basicsr.bench.stages',
                                description='Latency, MACs and MAC/s per stage of each network (CPU).')
    p.add_argument('--nets', nargs='+', required=True, help='as for basicsr bench (names, NAME:k=v, option files)')
    p.add_argument('--size', default='1280x720', help='output WIDTHxHEIGHT (SR networks get size / scale)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--keep-freed-memory', action='store_true', help='as for basicsr bench')
    a = p.parse_args(argv)
    from ecma_basicsr.archs import fuse_for_inference
    try:
        h, w = parse_size(a.size)
        specs = expand_specs(a.nets)
    except BenchError as err:
        p.error(str(err))
    torch.set_num_threads(a.threads)
    if a.keep_freed_memory:
        keep_freed_memory()
    print(f'# Time per stage at {a.size}, {a.threads} thread(s), median of {a.repeats}\n')
    for spec in specs:
        net = build(spec)
        shape = (1, spec.in_ch, *input_size(h, w, spec.scale))
        macs, total_macs = stage_macs(net, shape)
        gemm = gemm_throughput()[0]
        seconds, shapes, total_s = time_stages(fuse_for_inference(net, inplace=True), torch.rand(shape), a.repeats,
                                               a.warmup)
        print(stage_table(f'{spec.label} (GEMM ceiling {gemm / 1e9:.1f} GMAC/s)', seconds, shapes, total_s, macs,
                          total_macs, gemm) + '\n', flush=True)
        del net


if __name__ == '__main__':
    main()
