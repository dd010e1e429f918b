"""Timing, peak memory and the machine's float32 GEMM ceiling, measured the same way for every network.

* :func:`gemm_throughput`: MAC/s of an ``n x n @ n x n`` float32 matmul (median and best of timed
  runs), the ceiling each network's achieved MAC/s is compared with.
* :func:`time_forward`: warm-up runs, then ``repeats`` timed runs of ``fn`` (CUDA synchronised
  before the clock is read); the statistics of :func:`summarize`.
* :class:`PeakMemory`: peak memory of a code block above a baseline: on CUDA
  ``torch.cuda.max_memory_allocated``; on CPU the process's peak resident set (``VmHWM`` of
  ``/proc/self/status``, reset through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is
  not possible, which only grows, so sizes must go small to large).
* :func:`keep_freed_memory`: optional glibc setting that avoids page faults on large tensors.
* :func:`compile_for_inference`: ``basicsr bench --compile``, the same ``torch.compile`` for every network.
"""
import contextlib
import os
import re
import resource
import statistics
import time

import torch


def sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize(device)


def summarize(times):
    """Median, mean, min, max, IQR (when >= 4 runs) of ``times`` in seconds, returned in ms, with the
    runs themselves (``times``, ms, in run order) so that runs of several rounds can be pooled."""
    runs = [t * 1e3 for t in times]
    ms = sorted(runs)
    out = dict(median=statistics.median(ms), mean=statistics.fmean(ms), min=ms[0], max=ms[-1], runs=len(ms),
               times=runs)
    if len(ms) >= 4:
        q = statistics.quantiles(ms, n=4)
        out['iqr'] = q[2] - q[0]
    return out


def time_forward(fn, device='cpu', warmup=1, repeats=5, budget=None):
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs.

    Args:
        fn (callable): The forward (already under ``torch.inference_mode``).
        device (str): For CUDA synchronisation.
        warmup (int): Untimed runs first (allocations, FFT plans, 'auto' path choices).
        repeats (int): Timed runs.
        budget (float | None): Seconds for warm-up plus timed runs; after the warm-up the number of
            timed runs is cut so that they fit (at least one run is always timed).

    Returns:
        dict: :func:`summarize` of the timed runs plus ``first_s`` (the first warm-up run).
    """
    first = None
    begin = time.perf_counter()
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        sync(device)
        first = first if first is not None else time.perf_counter() - start
    if budget is not None and first is not None and first > 0:
        left = budget - (time.perf_counter() - begin)
        repeats = max(1, min(repeats, int(left / first)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    out = summarize(times)
    out['first_s'] = first
    return out


def compile_for_inference(net, x):
    """``torch.compile`` (inductor, weights frozen as constants) of ``net`` for inputs shaped like ``x``.

    Every network is compiled as built, with no network-specific rewrite, so the comparison stays
    fair; only ECMA's 'auto' large-kernel paths are fixed first to what 'auto' measures for ``x``
    (a traced forward cannot time them; both paths give the same result). The first forward, which
    compiles, is run here.

    Returns:
        tuple: (compiled module, seconds of that first forward).
    """
    import torch._inductor.config as inductor_config

    from ecma_basicsr.archs.fft_conv import pin_large_kernel_paths
    model = torch.compile(pin_large_kernel_paths(net, x), dynamic=False)
    start = time.perf_counter()
    with inductor_config.patch(freezing=True), torch.inference_mode():
        model(x)
    sync(x.device)
    return model, time.perf_counter() - start


def gemm_throughput(n=1536, repeats=5, device='cpu'):
    """Float32 GEMM throughput on ``device`` at the current thread count.

    Returns:
        tuple: (median, best) MAC/s over ``repeats`` timed ``n x n @ n x n`` products.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    with torch.inference_mode():
        res = time_forward(lambda: a @ b, device, warmup=1, repeats=repeats)
    return n ** 3 / (res['median'] / 1e3), n ** 3 / (res['min'] / 1e3)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt(3) parameters
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX
_KEEP_STATE = {'kept': False}


def keep_freed_memory():
    """Make glibc keep freed memory for reuse instead of returning it to the OS (this process only).

    Large tensors (beyond glibc's 32 MB mmap threshold) are otherwise mapped fresh for every
    allocation and page-faulted on first touch, which on some virtual machines costs more than
    the arithmetic (measured: a 64 MB element-wise op 5x slower into fresh memory). This is the
    effect jemalloc / tcmalloc are usually preloaded for. Returns True when it was applied.
    """
    libc = _libc()
    if libc is None:
        return False
    # -1 disables trimming (mallopt(3)). A finite threshold is an int, at most 2 GB: a network whose
    # forward frees more than that at the top of the heap (ECMA-B at 1280x720) got it trimmed
    # and page-faulted back every forward, 1.2-2.5 M faults and 10-18 s of system time per run.
    kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    _KEEP_STATE['kept'] = kept
    return kept


def _libc():
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, 'mallopt') else None
    except OSError:
        return None


@contextlib.contextmanager
def mapped_large_allocations():
    """Inside the block, large allocations are mapped and unmapped again, as without :func:`keep_freed_memory`.

    For work that is not timed and holds many large tensors alive at once: a traced forward (the MAC
    count) of GRL-B kept 2.8 GB alive, and with every allocation carved from the one heap, the holes
    its frees left outgrew 12 GB (the bench worker was killed). Does nothing unless
    :func:`keep_freed_memory` was applied in this process.
    """
    libc = _libc() if _KEEP_STATE['kept'] else None
    if libc is not None:
        libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, 0)


def _proc_status(key):
    try:
        with open('/proc/self/status') as f:
            m = re.search(rf'^{key}:\s+(\d+)\s+kB', f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_peak_rss():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def current_rss():
    rss = _proc_status('VmRSS')
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """``with PeakMemory(device, baseline) as pm: ...``; then ``pm.peak_bytes`` above ``baseline``.

    Args:
        device (str): 'cpu' or 'cuda[:i]'.
        baseline (int | None): Bytes to subtract (default: the current usage when entering).
    """

    def __init__(self, device='cpu', baseline=None):
        self.device, self.baseline, self.peak_bytes, self.method = str(device), baseline, None, None

    def __enter__(self):
        if self.device.startswith('cuda'):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            if self.baseline is None:
                self.baseline = torch.cuda.memory_allocated(self.device)
            self.method = 'cuda max_memory_allocated'
        else:
            reset = _reset_peak_rss()
            if self.baseline is None:
                self.baseline = current_rss()
            self.method = 'VmHWM (reset)' if reset else 'ru_maxrss (not resettable)'
        return self

    def __exit__(self, *exc):
        if self.device.startswith('cuda'):
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _proc_status('VmHWM') if self.method.startswith('VmHWM') else None
            if peak is None:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_bytes = max(0, peak - self.baseline)
        return False


def device_name(device='cpu'):
    """Human-readable device: the GPU name, or the CPU model and logical core count."""
    if str(device).startswith('cuda'):
        return torch.cuda.get_device_name(device)
    model = None
    try:
        with open('/proc/cpuinfo') as f:
            m = re.search(r'^model name\s*:\s*(.+)$', f.read(), re.M)
            model = m.group(1).strip() if m else None
    except OSError:
        pass
    import platform
    return f'{model or platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)'
