"""Schedules the measuring workers of ``basicsr bench`` and collects one row per network.

Each network runs in its own subprocess (:mod:`.worker`) with all its tasks: sizes small to
large, then the test sets. The parent watches the time: a task that outlives its deadline
(``budget x 3 + 60 s``; the worker's own prediction usually skips it first) is killed and
reported as ``timeout``; a worker that dies (the kernel's OOM killer, a crash) has its current
task reported with the reason, and a fresh worker continues with the remaining tasks. The
machine's GEMM ceiling is measured here at the start and the end of the run, and each worker
probes it again right before each size, so the fraction is taken against the ceiling measured
next to the network (the machine may be shared).
"""
import dataclasses
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .measure import summarize
from .networks import NetSpec
from .testsets import TestSet
from .worker import MARK

STARTUP_S = 180  # import torch + basicsr + build on a busy 2-core machine


@dataclass
class BenchConfig:
    """Settings shared by all networks of one run (see ``basicsr bench -h``)."""
    sizes: list  # [(h, w), ...] output sizes, small to large
    device: str = 'cpu'
    threads: int = 2
    warmup: int = 1
    repeats: int = 5
    budget: float = 120.0
    eval_budget: float = 300.0
    gemm_n: int = 1536
    count_macs: bool = True
    keep_freed_memory: bool = False
    seed: int = 0
    statistic: str = 'median'
    rounds: int = 1
    modes: tuple = ('eager', )  # 'eager' and/or 'compiled' (torch.compile): one row per network and mode


@dataclass
class Row:
    """Measurements of one network (or reference) row."""
    label: str
    kind: str = 'network'  # 'network' or 'reference'
    spec: dict = None
    params: int = None
    summary: str = None
    sizes: dict = field(default_factory=dict)  # 'WxH' -> result dict
    evals: dict = field(default_factory=dict)  # test set name -> result dict
    status: str = 'ok'


def size_key(hw):
    return f'{hw[1]}x{hw[0]}'


class WorkerRun:
    """One worker subprocess; lines from its stdout arrive in a queue."""

    def __init__(self, job):
        fd, self.job_path = tempfile.mkstemp(prefix='bench_job_', suffix='.json')
        with os.fdopen(fd, 'w') as f:
            json.dump(job, f)
        self.stderr = tempfile.TemporaryFile(mode='w+')
        env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=str(job['threads']),
                   MKL_NUM_THREADS=str(job['threads']))
        self.proc = subprocess.Popen([sys.executable, '-m', 'ecma_basicsr.bench.worker', self.job_path],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.lines.put(json.loads(line[len(MARK):]))
        self.lines.put(None)

    def stderr_tail(self, n=600):
        self.stderr.seek(0)
        text = self.stderr.read()
        return text[-n:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its pid
        self.proc.wait()

    def close(self):
        self.kill()
        self.stderr.close()
        os.unlink(self.job_path)


def _death_reason(run):
    code = run.proc.returncode
    tail = run.stderr_tail()
    if code == -signal.SIGKILL:
        return 'killed by the system (out of memory?)'
    if 'out of memory' in tail.lower() or "can't allocate memory" in tail.lower():
        return 'out of memory'
    last = [ln for ln in tail.strip().splitlines() if ln.strip()]
    return f'worker exited with {code}' + (f': {last[-1].strip()}' if last else '')


def task_deadline(task, cfg):
    per = cfg.budget if task['kind'] == 'size' else cfg.eval_budget
    return 3 * per + 60 if per else None


def run_network(spec, tasks, cfg, log=print, compiled=False):
    """Measure one network, eager or ``compiled``: returns a :class:`Row` (worker restarted after a lost task)."""
    row = Row(row_label(spec.label, compiled), spec=spec.to_dict())
    remaining = list(tasks)
    while remaining:
        job = dict(spec=spec.to_dict(), tasks=remaining, device=cfg.device, threads=cfg.threads, warmup=cfg.warmup,
                   repeats=cfg.repeats, budget=cfg.budget, eval_budget=cfg.eval_budget, gemm_n=cfg.gemm_n,
                   count_macs=cfg.count_macs, keep_freed_memory=cfg.keep_freed_memory, seed=cfg.seed,
                   compile=compiled)
        run = WorkerRun(job)
        current, deadline = None, time.monotonic() + STARTUP_S
        done = set()
        try:
            while True:
                timeout = max(0.1, deadline - time.monotonic()) if deadline else None
                try:
                    msg = run.lines.get(timeout=timeout)
                except queue.Empty:
                    what = 'startup' if current is None else _task_name(remaining[current])
                    log(f'  {row.label}: {what} timed out; killing the worker')
                    run.kill()
                    if current is None:
                        row.status = f'worker did not start within {STARTUP_S} s'
                        return row
                    _store(row, remaining[current], dict(status=f'timeout (> {deadline_s(remaining[current], cfg)} s)'))
                    done.add(current)
                    break
                if msg is None:  # worker ended
                    run.proc.wait()
                    if current is not None and current not in done:
                        reason = _death_reason(run)
                        log(f'  {row.label}: {_task_name(remaining[current])}: {reason}')
                        _store(row, remaining[current], dict(status=reason))
                        done.add(current)
                    elif current is None and run.proc.returncode:
                        row.status = _death_reason(run)
                        return row
                    break
                if msg['event'] == 'fatal':
                    row.status = msg['error']
                    log(f'  {row.label}: {msg["error"]}')
                    return row
                if msg['event'] == 'built':
                    row.params, row.summary = msg['params'], msg.get('summary')
                elif msg['event'] == 'start':
                    current = msg['index']
                    d = task_deadline(remaining[current], cfg)
                    deadline = time.monotonic() + d if d else None
                elif msg['event'] == 'result':
                    _store(row, remaining[msg['index']], msg['result'])
                    done.add(msg['index'])
                    log(f'  {row.label}: {_task_name(remaining[msg["index"]])}: {_brief(msg["result"])}')
        finally:
            run.close()
        remaining = [t for i, t in enumerate(remaining) if i not in done]
        # a lost size makes larger sizes hopeless: report them as skipped instead of retrying
        if any(t['kind'] == 'size' for t in remaining) and any(
                r.get('status', '').startswith(('timeout', 'killed', 'out of memory')) for r in row.sizes.values()):
            for t in [t for t in remaining if t['kind'] == 'size']:
                _store(row, t, dict(status='skipped (a smaller size already failed)'))
            remaining = [t for t in remaining if t['kind'] != 'size']
    return row


def row_label(label, compiled):
    """The results row of a network: compiled rows are marked, so both modes can share a table."""
    return f'{label} (compiled)' if compiled else label


def pool_round(row, later):
    """Add the timed runs of a later round to ``row``: latency statistics over the runs of every round,
    the largest peak memory, the median GEMM probe; a size that failed in any round keeps that status."""
    for key, res in later.sizes.items():
        mine = row.sizes.get(key)
        if not mine or 'latency_ms' not in mine:
            continue
        if 'latency_ms' not in res:
            mine['status'] = f"round {mine.get('rounds', 1) + 1}: {res.get('status')}"
            continue
        times = mine['latency_ms']['times'] + res['latency_ms']['times']
        first_s = mine['latency_ms'].get('first_s')
        mine['latency_ms'] = dict(summarize([t / 1e3 for t in times]), first_s=first_s)
        mine['peak_mem_bytes'] = max(mine['peak_mem_bytes'], res['peak_mem_bytes'])
        probes = mine.setdefault('gemm_probes', [[mine['gemm_macs_per_s'], mine['gemm_best_macs_per_s']]])
        probes.append([res['gemm_macs_per_s'], res['gemm_best_macs_per_s']])
        mine['gemm_macs_per_s'] = statistics.median(p[0] for p in probes)
        mine['gemm_best_macs_per_s'] = max(p[1] for p in probes)
        mine['rounds'] = mine.get('rounds', 1) + 1


def deadline_s(task, cfg):
    d = task_deadline(task, cfg)
    return f'{d:.0f}' if d else 'inf'


def _task_name(task):
    return size_key((task['h'], task['w'])) if task['kind'] == 'size' else f"eval {task['testset']['name']}"


def _store(row, task, result):
    if task['kind'] == 'size':
        row.sizes[size_key((task['h'], task['w']))] = result
    else:
        row.evals[task['testset']['name']] = result


def _brief(result):
    if 'latency_ms' in result:
        lat = result['latency_ms']
        macs = result.get('macs')
        fft = result.get('fft') or 0
        return (f"{lat['median']:.1f} ms median of {lat['runs']}, "
                + (f'{(macs + fft) / 1e9:.2f} GMACs, ' if macs is not None else '')
                + f"{result['peak_mem_bytes'] / 2**20:.0f} MB peak, {result['status']}")
    if 'psnr' in result and result['psnr'] is not None:
        return (f"PSNR {result['psnr']:.3f} dB, SSIM {result['ssim']:.4f} ({result['images']} images), "
                f"{result['status']}")
    return result.get('status', '?')


def reference_rows(testsets, sr_scales, channels=3, log=print):
    """Bicubic (sr sets, one row per scale) and identity (other sets) floors, as rows."""
    from .testsets import reference_scores
    rows = []
    for scale in sorted(sr_scales):
        sets = [ts for ts in testsets if ts.task == 'sr']
        if sets:
            row = Row(f'bicubic x{scale}', kind='reference')
            for ts in sets:
                p, s, n = reference_scores(ts, scale, channels)
                row.evals[ts.name] = dict(psnr=p, ssim=s, images=n, status='ok')
                log(f'  bicubic x{scale} {ts.name}: PSNR {p:.3f} dB, SSIM {s:.4f}')
            rows.append(row)
    sets = [ts for ts in testsets if ts.task != 'sr']
    if sets:
        row = Row('identity (degraded input)', kind='reference')
        for ts in sets:
            p, s, n = reference_scores(ts, 1, channels)
            row.evals[ts.name] = dict(psnr=p, ssim=s, images=n, status='ok')
            log(f'  identity {ts.name}: PSNR {p:.3f} dB, SSIM {s:.4f}')
        rows.append(row)
    return rows


def run_all(specs, testsets, cfg, log=print):
    """Measure every network and reference. Returns (rows, run_info)."""
    import torch

    from .measure import gemm_throughput
    torch.set_num_threads(cfg.threads)
    info = dict(started=time.time())
    log(f'GEMM ceiling probe (float32 {cfg.gemm_n}^3, {cfg.threads} threads) ...')
    info['gemm_start'], info['gemm_start_best'] = gemm_throughput(cfg.gemm_n, repeats=5, device=cfg.device)
    log(f'  {info["gemm_start"] / 1e9:.1f} GMAC/s (best run {info["gemm_start_best"] / 1e9:.1f})')
    rows = []
    sr_scales = {s.scale for s in specs if s.scale > 1} or {4}
    if testsets:
        log('reference rows ...')
        rows += reference_rows(testsets, sr_scales, log=log)
    first = {}
    for r in range(cfg.rounds):
        # later rounds time the sizes again, interleaved with the other networks; MACs and scores need one
        rcfg = cfg if r == 0 else dataclasses.replace(cfg, count_macs=False)
        for spec, mode in [(spec, mode) for spec in specs for mode in cfg.modes]:
            label = row_label(spec.label, mode == 'compiled')
            log(f'{label} ...' + (f' (round {r + 1} of {cfg.rounds})' if cfg.rounds > 1 else ''))
            tasks = [dict(kind='size', h=h, w=w) for h, w in cfg.sizes]
            if r == 0 and spec.checkpoint and mode == cfg.modes[0]:  # scores are the same in both modes
                tasks += [dict(kind='eval', testset=ts.to_dict()) for ts in testsets if ts.applies_to(spec.scale)]
            row = run_network(spec, tasks, rcfg, log, compiled=mode == 'compiled')
            if r == 0:
                first[label] = row
                rows.append(row)
            else:
                pool_round(first[label], row)
    info['gemm_end'], info['gemm_end_best'] = gemm_throughput(cfg.gemm_n, repeats=5, device=cfg.device)
    info['elapsed_s'] = time.time() - info['started']
    log(f'GEMM ceiling at the end: {info["gemm_end"] / 1e9:.1f} GMAC/s; run took {info["elapsed_s"]:.0f} s')
    return rows, info


__all__ = ['BenchConfig', 'Row', 'run_all', 'run_network', 'reference_rows', 'size_key', 'NetSpec', 'TestSet']
