"""The measuring subprocess of ``basicsr bench``: one network, a list of tasks, one JSON line per result.

Run as ``python -m ecma_basicsr.bench.worker JOB.json``. The job holds the network spec, the device,
thread count, warm-up/repeat counts, the per-task time budget and the tasks: ``size`` (latency,
peak memory, GEMM probe, MACs at one input size) and ``eval`` (PSNR/SSIM on one test set). With
``compile`` the size tasks time ``torch.compile`` of the network as built, compiled per size
(:func:`~.measure.compile_for_inference`); evaluation stays eager (the same function, any image size). Sizes
come small to large. Each result is printed on stdout as ``@@BENCH@@ {json}``, so the parent
keeps what finished even when a later task runs out of memory or time and the process is killed.

Budget rule per size task: the forward time is predicted from the previous size (times the
ratio of input pixels); a task predicted to need more than the budget for one forward is
skipped and reported as such. Otherwise the timed runs are cut to fit the budget (at least one),
and MACs are counted with mmengine only if one more traced forward still fits; else they are
scaled from the previous size by the pixel ratio and flagged as estimated.
"""
import json
import sys
import time
import traceback

MARK = '@@BENCH@@ '


def emit(event, **data):
    print(MARK + json.dumps(dict(event=event, **data)), flush=True)


def _is_oom(err):
    text = str(err).lower()
    return isinstance(err, MemoryError) or 'out of memory' in text or "can't allocate memory" in text or \
        'defaultcpuallocator' in text


def input_size(h, w, scale):
    """Input (H, W) for an output size h x w at ``scale`` (rounded; at least 1)."""
    return max(1, round(h / scale)), max(1, round(w / scale))


def run_size(net, fast, spec, task, job, state):
    import torch

    from ecma_basicsr.analysis.flops import analyze_macs

    from .measure import PeakMemory, compile_for_inference, gemm_throughput, mapped_large_allocations, time_forward

    device, budget = job['device'], job['budget']
    h_in, w_in = input_size(task['h'], task['w'], spec.scale)
    pixels = h_in * w_in
    out = dict(input=[h_in, w_in], output=[h_in * spec.scale, w_in * spec.scale])
    prev = state.get('prev')
    predicted = prev['forward_s'] * pixels / prev['pixels'] if prev else None
    if predicted is not None and budget and predicted > budget:
        out['status'] = f'over budget: est. {predicted:.0f} s per forward > {budget:.0f} s'
        out['predicted_s'] = predicted
        if prev.get('macs') is not None:
            out.update(macs=prev['macs'] * pixels / prev['pixels'], fft=prev['fft'] * pixels / prev['pixels'],
                       macs_estimated=True)
        return out
    gen = torch.Generator().manual_seed(job.get('seed', 0))
    x = torch.rand(1, spec.in_ch, h_in, w_in, generator=gen).to(device)
    if job.get('compile'):  # compiled per size (static shapes); the compile time is reported, not budgeted
        fast, out['compile_s'] = compile_for_inference(net, x)
    started = time.monotonic()
    out['gemm_macs_per_s'], out['gemm_best_macs_per_s'] = gemm_throughput(job.get('gemm_n', 1536), device=device)
    shape_box = {}

    def forward():
        y = fast(x)
        shape_box.setdefault('shape', tuple(y.shape))

    # leave room for the traced forward of the MAC count (about 2.5 forwards) when it can be predicted
    timed_budget = budget - (time.monotonic() - started) - 2.5 * (predicted or 0) if budget else None
    with torch.inference_mode(), PeakMemory(device, baseline=state['baseline_mem']) as pm:
        lat = time_forward(forward, device, warmup=max(1, job['warmup']), repeats=job['repeats'],
                           budget=timed_budget)
    expected = (h_in * spec.scale, w_in * spec.scale)
    if tuple(shape_box['shape'][-2:]) != expected:
        raise RuntimeError(f"{spec.label}: output {shape_box['shape']} for input {tuple(x.shape)}; expected spatial "
                           f'size {expected} (scale {spec.scale}). Set the scale/upscale of the network.')
    out.update(latency_ms=lat, peak_mem_bytes=pm.peak_bytes, mem_method=pm.method)
    forward_s = lat['median'] / 1e3
    used = time.monotonic() - started
    if job.get('count_macs', True) and (not budget or used + 2.5 * forward_s <= budget or prev is None):
        with mapped_large_allocations():
            count = analyze_macs(net, x)
        out.update(macs=count.macs, fft=count.fft, macs_estimated=False,
                   by_operator={k: float(v) for k, v in count.by_operator.items()})
    elif prev and prev.get('macs') is not None:
        out.update(macs=prev['macs'] * pixels / prev['pixels'], fft=prev['fft'] * pixels / prev['pixels'],
                   macs_estimated=True)
    out['status'] = 'ok' if lat['runs'] >= job['repeats'] else f"ok ({lat['runs']} of {job['repeats']} runs: budget)"
    state['prev'] = dict(forward_s=forward_s, pixels=pixels, macs=out.get('macs'), fft=out.get('fft'))
    return out


def run_eval(net, spec, task, job):
    from .testsets import TestSet, evaluate
    ts = TestSet.from_dict(task['testset'])
    deadline = time.monotonic() + job['eval_budget'] if job.get('eval_budget') else None
    psnr, ssim, n, complete = evaluate(net, ts, spec.scale, spec.in_ch, job['device'], deadline)
    status = 'ok' if complete else f'partial: {n} images within the {job["eval_budget"]:.0f} s budget'
    return dict(psnr=psnr, ssim=ssim, images=n, status=status)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = json.load(f)
    import torch
    torch.set_num_threads(job['threads'])
    import ecma_basicsr  # noqa: F401

    from . import BenchError
    from .measure import current_rss, keep_freed_memory
    if job.get('keep_freed_memory') and not keep_freed_memory():
        emit('fatal', error='--keep-freed-memory needs glibc (mallopt); it is not available here.')
        return 1
    from ecma_basicsr.archs import fuse_for_inference

    from .networks import NetSpec, build

    spec = NetSpec.from_dict(job['spec'])
    try:
        net = build(spec, job['device'])
    except BenchError as err:
        emit('fatal', error=str(err))
        return 1
    except Exception as err:  # noqa: BLE001  (report any construction failure as the row's status)
        emit('fatal', error=f'{type(err).__name__}: {err}')
        return 1
    fast = fuse_for_inference(net)  # timed and evaluated; MACs are counted on the network as built
    if job['device'].startswith('cuda'):
        baseline = torch.cuda.memory_allocated(job['device'])
    else:
        baseline = current_rss()
    emit('built', params=sum(p.numel() for p in net.parameters()),
         summary=getattr(getattr(net, 'net', net), 'config_summary', lambda: None)())
    state = dict(baseline_mem=baseline)
    for index, task in enumerate(job['tasks']):
        emit('start', index=index)
        try:
            if task['kind'] == 'size':
                result = run_size(net, fast, spec, task, job, state)
            else:
                result = run_eval(fast, spec, task, job)
        except Exception as err:  # noqa: BLE001
            status = 'out of memory' if _is_oom(err) else f'error: {type(err).__name__}: {err}'
            result = dict(status=status, traceback=traceback.format_exc(limit=3))
        emit('result', index=index, result=result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
