"""Native kernels for ECMA's fused inference on a CPU (used by :mod:`.ecma_fuse`).

PyTorch runs a LAM's grouped W' (Eq. 2, 5) as a depthwise conv of every input followed by a
sum over each group (a grouped conv with 2-4 inputs per group has no fast kernel), and the
branches of Q (Eq. 3) as separate passes. ``native/lam_conv.c`` does each of them in one pass
that keeps the rows it works on in cache: the group sum, the cascade's O'_{i-1} term, the bias,
the write into Q's slot and the product (or sum) branch. The same file holds the FFN's channel
LayerNorm of one tile and the GroupNorm statistics of Q (Eq. 3's norm, folded into the reduce
conv), each a few vectorised passes over cache-sized pieces instead of several PyTorch ops.

The C file is compiled with the system's C compiler the first time a fused network needs it and
the library is cached per machine under ``$ECMA_BASICSR_CACHE`` (default
``~/.cache/ecma_basicsr``); a compiler, flags or source change builds a new one. Without a
compiler, or with ``ECMA_BASICSR_NATIVE=0``, the fused network uses PyTorch ops instead (one
warning says why): same results within float32 round-off, slower.
"""
import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'native', 'lam_conv.c')
FLAGS = ['-O3', '-march=native', '-fopenmp-simd', '-std=c99', '-shared', '-fPIC']
LIBS = ['-lm']
KERNEL_SIZES = (3, 5, 7)  # the unrolled kernels; PyTorch's own is faster for larger ones
COMBINE_CODES = {'product': 0, 'add': 1}
MIN_PIXELS_PER_THREAD = 1 << 14  # below this a thread hand-off costs more than it saves

_state = {'lib': None, 'error': None, 'pool': None}
_lock = threading.Lock()
_I64, _I32, _PTR = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
_ARGTYPES = [_I64, _I64, _I64, _I64, _I64, _I32, _PTR, _I64, _PTR, _I64, _I32, _PTR, _PTR, _PTR, _I64,
             _PTR, _I64, _PTR, _I64, _I32]


def cache_dir():
    """Folder of the compiled libraries: ``$ECMA_BASICSR_CACHE``, else ``~/.cache/ecma_basicsr``."""
    root = os.environ.get('ECMA_BASICSR_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'ecma_basicsr')
    return os.path.join(root, 'native')


def _cpu_flags():
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            return next((line for line in f if line.startswith(('flags', 'Features'))), '')
    except OSError:
        return ''


def build(compiler=None):
    """Compile ``native/lam_conv.c`` unless a library for this source, compiler and CPU is cached.

    Args:
        compiler (str | None): C compiler; default ``$CC``, else ``cc``.

    Returns:
        str: Path of the shared library.

    Raises:
        RuntimeError: the compiler is missing or failed; the message holds its output.
    """
    compiler = compiler or os.environ.get('CC') or 'cc'
    try:
        version = subprocess.run([compiler, '--version'], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"no C compiler '{compiler}' ({e}); install gcc or set CC") from e
    with open(SOURCE, 'rb') as f:
        source = f.read()
    key = hashlib.sha256(b'\0'.join([source, version.encode(), ' '.join(FLAGS).encode(),
                                     platform.machine().encode(), _cpu_flags().encode()])).hexdigest()[:16]
    folder = cache_dir()
    path = os.path.join(folder, f'lam_conv-{key}.so')
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    # compile beside the target and rename: a concurrent or interrupted build never leaves a partial library
    fd, tmp = tempfile.mkstemp(suffix='.so.tmp', dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, '-o', tmp, SOURCE, *LIBS], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"'{compiler} {' '.join(FLAGS)} {SOURCE}' failed:\n{done.stderr.strip()[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def library():
    """The loaded kernel library, or None (PyTorch fallback) with one warning saying why."""
    if _state['lib'] is not None or _state['error'] is not None:
        return _state['lib']
    with _lock:
        if _state['lib'] is None and _state['error'] is None:
            if os.environ.get('ECMA_BASICSR_NATIVE', '1') == '0':
                _state['error'] = 'disabled by ECMA_BASICSR_NATIVE=0'
                return None
            try:
                lib = ctypes.CDLL(build())
                lib.ecma_grouped_conv.argtypes = _ARGTYPES
                lib.ecma_grouped_conv.restype = ctypes.c_int
                lib.ecma_channel_norm.argtypes = [_I64, _I64, _PTR, _I64, _PTR, ctypes.c_float]
                lib.ecma_channel_norm.restype = ctypes.c_int
                lib.ecma_group_moments.argtypes = [_I64, _I64, _PTR, _I64, _PTR, _PTR]
                lib.ecma_group_moments.restype = None
                _state['lib'] = lib
            except (RuntimeError, OSError) as e:
                _state['error'] = str(e)
                warnings.warn(f'ECMA native LAM kernel unavailable, the fused network uses PyTorch ops (slower): {e}',
                              RuntimeWarning, stacklevel=3)
    return _state['lib']


def status():
    """'native' when the kernel is loaded, else the reason it is not (for benchmark provenance)."""
    return 'native' if library() is not None else f"pytorch ({_state['error']})"


def supports(weight, *maps):
    """Whether :func:`grouped_conv` handles this kernel and these maps (else use PyTorch ops)."""
    k = weight.shape[-1]
    return (_plain_eager() and weight.shape[-2] == k and k in KERNEL_SIZES and _plane_layout(weight)
            and all(m is None or _plane_layout(m) for m in maps) and library() is not None)


def _plain_eager():
    """Not traced, compiled, exported or under a dispatch mode (e.g. a MAC counter): those must see PyTorch ops."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None)


def _plane_layout(t):
    """A plain float32 CPU tensor (no grad, no subclass such as a fake tensor) with contiguous planes
    H * W apart and any batch stride: what the kernel reads through raw pointers."""
    _, _, h, w = t.shape
    return (type(t) is torch.Tensor and t.dtype == torch.float32 and t.device.type == 'cpu' and not t.requires_grad
            and t.stride(3) == 1 and t.stride(2) == w and t.stride(1) == h * w)


def _pool():
    with _lock:
        if _state['pool'] is None:
            _state['pool'] = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                                thread_name_prefix='ecma-native')
    return _state['pool']


def grouped_conv(raw, weight, bias, out, prev=None, other=None, combined=None, combine='product'):
    """``out`` = the grouped 'same' conv of Cat(``prev``, ``raw``) in cascade order (Eq. 5), + bias.

    Group o of the conv reads channel o of ``prev`` (if given), then channels o*r .. o*r+r-1 of ``raw``,
    as :func:`~.ecma_arch.cascade_context` orders them. With ``combined``, also writes
    ``combined = out * other`` (``combine='product'``) or ``out + other`` ('add').

    Args:
        raw (Tensor): (B, C_out * r, H, W) map.
        weight (Tensor): (C_out, r + (prev is not None), k, k) contiguous, k in :data:`KERNEL_SIZES`.
        bias (Tensor | None): (C_out,).
        out, prev, other, combined (Tensor | None): (B, C_out, H, W) maps; they may be channel
            slices of larger maps (e.g. Q's slots).

    Returns:
        Tensor: ``out``.
    """
    lib = library()
    c_out, terms, k, _ = weight.shape
    b, _, h, w = raw.shape
    r = terms - (prev is not None)
    if raw.shape[1] != c_out * r or not weight.is_contiguous() or not supports(weight, raw, out, prev, other,
                                                                                combined):
        raise ValueError(f'grouped_conv: unsupported arguments (raw {tuple(raw.shape)}, weight {tuple(weight.shape)})')
    if bias is not None:
        bias = bias.contiguous()
    code = COMBINE_CODES[combine] if combined is not None else 0

    def ptr(t):
        return None if t is None else t.data_ptr()

    def stride(t):
        return 0 if t is None else t.stride(0)

    def run(lo, hi):
        rc = lib.ecma_grouped_conv(b, lo, hi, h, w, k, ptr(prev), stride(prev), ptr(raw), stride(raw), r,
                                   ptr(weight), ptr(bias), ptr(out), stride(out), ptr(other), stride(other),
                                   ptr(combined), stride(combined), code)
        if rc != 0:
            raise MemoryError(f'ecma_grouped_conv could not allocate its row buffers ({k} x {w} floats)')

    _parallel(run, c_out, b * h * w * c_out)
    return out


def _threads(n, pixels):
    """Threads for ``n`` items with ``pixels`` of work in all: ``torch.get_num_threads()``, fewer where a
    thread would get less than :data:`MIN_PIXELS_PER_THREAD` (a hand-off then costs more than it saves)."""
    return min(torch.get_num_threads(), n, max(1, pixels // MIN_PIXELS_PER_THREAD))


def _parallel(run, n, pixels):
    """``run(lo, hi)`` over ranges of ``n`` items (channels, groups), split over the thread pool
    (:func:`_threads`)."""
    threads = _threads(n, pixels)
    if threads <= 1:
        run(0, n)
        return
    bounds = [n * i // threads for i in range(threads + 1)]
    for f in [_pool().submit(run, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
        f.result()


def torch_threads_of_this_thread():
    """Functions that set the OpenMP and MKL threads of the calling thread only, or None where this
    PyTorch build does not expose both (then :func:`split_torch_ops` runs its work unsplit)."""
    if 'thread_controls' not in _state:
        controls = None
        if torch.backends.mkl.is_available() and torch.backends.openmp.is_available():
            try:
                process = ctypes.CDLL(None)
                with open('/proc/self/maps', encoding='utf-8') as maps:  # where libtorch_cpu was loaded from
                    torch_cpu = next((line.split()[-1] for line in maps if line.rstrip().endswith('libtorch_cpu.so')),
                                     None)
                mkl = ctypes.CDLL(torch_cpu).mkl_set_num_threads_local if torch_cpu else None
                if mkl is not None:
                    controls = (process.omp_set_num_threads, mkl)
            except (OSError, AttributeError):
                controls = None
        _state['thread_controls'] = controls
    return _state['thread_controls']


_thread = threading.local()


def _one_thread_here():
    """Make the calling (pool) thread run PyTorch ops on one thread: OpenMP's and MKL's thread counts
    are per thread there, so the caller's own setting is left as it is."""
    if getattr(_thread, 'single', False):
        return
    omp, mkl = torch_threads_of_this_thread()
    torch.get_num_threads()  # PyTorch sets a new thread's OpenMP threads on first use: let it, then override
    omp(1)
    mkl(ctypes.byref(ctypes.c_int(1)))  # the Fortran-style entry point: takes a pointer
    _thread.single = True


def split_torch_ops(run, n, pixels):
    """``run(lo, hi)`` over ranges of ``n`` items whose PyTorch ops are too small to be worth their own
    threads (the FFN's cache-sized tiles): each range goes to a pool thread that runs them on one thread,
    so the threads work apart instead of meeting at every op. Runs unsplit on one thread, under tracing
    or compilation, and where the per-thread controls are missing. Grad and inference modes are the caller's.
    """
    if _threads(n, pixels) <= 1 or not _plain_eager() or torch_threads_of_this_thread() is None:
        run(0, n)  # on the caller's thread, whose own thread count must stay as it is
        return
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def task(lo, hi):
        _one_thread_here()
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            run(lo, hi)

    _parallel(task, n, pixels)


def supports_rows(x):
    """Whether :func:`channel_norm` can read ``x``: 2-D float32 rows with unit column stride, plain eager."""
    return (_plain_eager() and x.dim() == 2 and type(x) is torch.Tensor and x.dtype == torch.float32
            and x.device.type == 'cpu' and not x.requires_grad and x.stride(1) == 1 and library() is not None)


def channel_norm(x, eps):
    """The FFN's channel LayerNorm without affine of a (C, pixels) tile: a new dense (C, pixels) tensor.

    Mean and biased variance over the C rows of each column, two passes, as
    ``(x - x.mean(0)) * rsqrt(((x - x.mean(0)) ** 2).mean(0) + eps)``.
    """
    if not supports_rows(x):
        raise ValueError(f'channel_norm: unsupported tile {tuple(x.shape)}, strides {x.stride()}, {x.dtype}')
    c, n = x.shape
    y = torch.empty(c, n)
    if library().ecma_channel_norm(c, n, x.data_ptr(), x.stride(0), y.data_ptr(), eps) != 0:
        raise MemoryError(f'ecma_channel_norm could not allocate its column buffer ({n} floats)')
    return y


MOMENT_CHUNK = 4096  # floats per chunk of group_moments: 16 KB, read twice from L1


def group_moments(x, groups):
    """Per-sample mean and biased variance of ``groups`` contiguous channel groups of a contiguous ``x``.

    Returns:
        tuple[Tensor, Tensor]: (B, groups) float32 means and variances, or None when the kernel
        cannot read ``x`` (the caller then uses PyTorch ops).
    """
    if not (x.is_contiguous() and x.shape[1] % groups == 0 and supports_rows(x.view(x.shape[0], -1))):
        return None
    mean, var = x.new_empty(x.shape[0], groups), x.new_empty(x.shape[0], groups)
    rows, length = x.shape[0] * groups, x[0].numel() // groups
    lib, size = library(), x.element_size()

    def run(lo, hi):
        lib.ecma_group_moments(hi - lo, length, x.data_ptr() + lo * length * size, MOMENT_CHUNK,
                               mean.data_ptr() + lo * size, var.data_ptr() + lo * size)

    _parallel(run, rows, x.numel())
    return mean, var
