"""Tiled inference: run a network over an image in overlapping tiles and blend them without seams.

Used by ``basicsr restore`` for photos whose whole-image forward does not fit in memory. The image is cut
into tiles of ``tile`` x ``tile`` input pixels that overlap by ``overlap`` pixels; each tile's output is
weighted by a ramp that rises linearly across the overlap on every side that borders another tile
(weight 1 on the image border), and the weighted outputs are summed and divided by the summed weights,
so neighbouring tiles fade into each other instead of meeting at a hard edge.

A tile is exact where its receptive field stays inside the tile. ECMA's cascaded large kernels (Eq. 4-5,
k_1 up to 64 at the first level, 4x further at the deepest U-Net level) and its GroupNorm (statistics over
the whole input) see far beyond any practical overlap, so a tiled ECMA output is close to, not equal to,
the whole-image one; the README gives the measured PSNR gap per overlap.

``auto_tile`` picks the largest tile whose forward fits a memory budget, from the peak memory of two
small probe forwards (a linear fit of bytes against pixels: the networks here have activations that
grow with the pixel count and no global attention). The fit can under-predict large tiles (IRNeXt needed
1.55x its fitted bytes per pixel at 2416 px), so ``fit_tile`` then measures a forward at half the chosen
tile's area, raises the fit to it, and measures the tile chosen again, shrinking it until its peak fits.
"""
import math

import torch

# probe inputs (square side in input pixels) for the memory model of ``auto_tile``
PROBE_SIDES = (96, 192)
SAFETY = 1.5  # head-room: ECMA-T measured 1.3x the fitted model at 384-512 px (allocator, FFT plans)
MIN_TILE = 64


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of ``tile`` along ``length`` that overlap by at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f'tile overlap ({overlap}) must be smaller than the tile ({tile}).')
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def ramp(length, left, right, overlap):
    """1-D blend weight of one tile: rises over ``overlap`` at a side that borders another tile."""
    w = torch.ones(length)
    if overlap > 0:
        n = min(overlap, length)
        up = torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)
        if left:
            w[:n] = torch.minimum(w[:n], up)
        if right:
            w[-n:] = torch.minimum(w[-n:], up.flip(0))
    return w


def tile_ramp(start, side, length, overlap, scale=1):
    """:func:`ramp` of the tile at ``start`` (``side`` input pixels) on an axis of ``length``, output resolution."""
    return ramp(side * scale, start > 0, start + side < length, overlap * scale)


def tiles_of(h, w, tile, overlap):
    """``[(top, left, height, width)]`` input windows covering an ``h`` x ``w`` image."""
    th, tw = min(tile, h), min(tile, w)
    return [(y, x, th, tw) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]


def tiled_forward(net, x, scale, tile, overlap, batch=1, progress=None):
    """``net(x)`` computed tile by tile (``x``: N x C x H x W; N is usually 1).

    Args:
        net (nn.Module): Image-to-image network, output ``scale`` times the input size.
        x (Tensor): Input batch.
        scale (int): Output / input size ratio.
        tile (int): Tile side in input pixels (0 or >= the image: one whole-image forward).
        overlap (int): Overlap of neighbouring tiles in input pixels.
        batch (int): Tiles per forward (tiles of one image have equal sizes, so they stack).
        progress (callable | None): Called with the number of tiles done after each forward.

    Returns:
        Tensor: N x C' x sH x sW on ``x``'s device, float32.
    """
    n, _, h, w = x.shape
    if not tile or (tile >= h and tile >= w):
        out = net(x).float()
        if progress:
            progress(1)
        return out
    windows = tiles_of(h, w, tile, overlap)
    out = None
    for i in range(0, len(windows), batch):
        group = windows[i:i + batch]
        crops = torch.cat([x[:, :, y:y + th, xx:xx + tw] for y, xx, th, tw in group])
        res = net(crops).float()
        if out is None:
            out = torch.zeros(n, res.shape[1], h * scale, w * scale, device=x.device)
        for j, (y, xx, th, tw) in enumerate(group):
            wy, wx = tile_ramp(y, th, h, overlap, scale), tile_ramp(xx, tw, w, overlap, scale)
            ys, xs = slice(y * scale, (y + th) * scale), slice(xx * scale, (xx + tw) * scale)
            out[:, :, ys, xs] += res[j * n:(j + 1) * n] * (wy[:, None] * wx[None, :]).to(x.device)
        if progress:
            progress(len(group))
    # The tiles are every pair of a row window and a column window, and each tile's weight is the product
    # of its row and column ramps, so the summed weights are the product of two 1-D sums: no accumulator.
    wy, wx = (axis_weight_sum(n_px, tile, overlap, scale).to(x.device) for n_px in (h, w))
    return out.div_(wy[:, None]).div_(wx)


def axis_weight_sum(length, tile, overlap, scale=1):
    """Blend weights of all tiles along one axis, summed, at output resolution (``length * scale``)."""
    side = min(tile, length)
    total = torch.zeros(length * scale)
    for start in tile_starts(length, side, overlap):
        total[start * scale:(start + side) * scale] += tile_ramp(start, side, length, overlap, scale)
    return total


def count_tiles(h, w, tile, overlap):
    if not tile or (tile >= h and tile >= w):
        return 1
    return len(tiles_of(h, w, tile, overlap))


def memory_model(net, in_ch, device='cpu', sides=PROBE_SIDES):
    """``(fixed_bytes, bytes_per_input_pixel)`` of one forward, fitted to two probe forwards."""
    measure = measure_forward(net, in_ch, device)  # frees kept memory first: it would hide the probe's need
    peaks = [measure(side, side) for side in sides]
    (s0, s1), (p0, p1) = sides, peaks
    per_px = max((p1 - p0) / (s1 * s1 - s0 * s0), p1 / (s1 * s1) / 2, 1.0)
    return max(p1 - per_px * s1 * s1, 0.0), per_px


def release_freed_memory(device):
    """Give freed heap memory back to the OS (glibc ``malloc_trim``): before a probe, so that its resident
    peak is its own, and between tiles, so that the heap kept for speed (``keep_freed_memory``) does not
    grow by fragmentation from one tile forward to the next (M3SNet, 6 tiles of 1592 px, peaked 1.6 GiB above
    its measured forward plus held memory; with the release, 12 tiles of 1296 px stayed 0.2 GiB above)."""
    if str(device).startswith('cuda'):
        torch.cuda.empty_cache()
        return
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the fitted model may be low, SAFETY covers part of it
        pass


def output_bytes(x, scale, image_bytes=0):
    """Bytes a tiled run of ``x`` holds besides the forward: the float32 output accumulator of
    :func:`tiled_forward` (the output has ``x``'s channels) plus ``image_bytes``, the image written from it."""
    n, c, h, w = x.shape
    return n * h * w * scale * scale * 4 * c + image_bytes


def auto_tile(h, w, budget_bytes, model, multiple=8, out_bytes=0, safety=SAFETY):
    """The tile side (input pixels) whose forward fits ``budget_bytes``; 0 when the whole image fits.

    ``out_bytes`` (:func:`output_bytes`) is what a tiled run holds besides the forward; the tile's forward
    gets the budget that remains. A whole-image forward holds no accumulators, only its output.
    ``safety`` divides the budget: the head-room for the model's error.
    """
    fixed, per_px = model
    if budget_bytes / safety - fixed >= per_px * h * w:
        return 0
    usable = (budget_bytes - out_bytes) / safety - fixed
    side = int(math.sqrt(max(usable, 0) / per_px)) // multiple * multiple
    return max(side, MIN_TILE)


VERIFY_HEADROOM = 1.2  # a measured forward of the very tile size; repeated tile forwards fragment the heap a little
REFIT_SAFETY = 1.25  # after a measured forward at half the area: bytes per pixel still grow a little with size
VERIFY_FROM = 0.25  # check forwards predicted to use more than this share of the budget; smaller ones are safe


def fit_tile(h, w, budget_bytes, model, measure, multiple=8, out_bytes=0, rounds=3):
    """:func:`auto_tile`, then checked against measured forwards: the tile shrinks until its peak fits.

    The probes' fit can under-predict a large tile, so the first measured forward is at half the
    predicted tile's area (which stays within the budget unless the fit is off by 2x); the fit is
    raised to it, the tile chosen again and its own forward measured, shrinking it while it exceeds.

    Args:
        h, w (int): Image size in input pixels.
        budget_bytes (int): Memory budget of the forward plus ``out_bytes``.
        model (tuple): :func:`memory_model` of the network.
        measure (callable): ``measure(th, tw)`` -> peak bytes of one forward of a th x tw input
            (:func:`measure_forward`).
        multiple (int): Tile sides are multiples of this.
        out_bytes (int): What a tiled run holds besides the forward (:func:`output_bytes`).
        rounds (int): Measured forwards of the chosen tile at most.

    Returns:
        tuple: ``(tile, peak_bytes)``; ``tile`` 0 means the whole image, ``peak_bytes`` the measured peak of
        that tile's forward (of the last, larger tile measured when all ``rounds`` exceeded; None when
        the prediction was small enough not to need a measurement).
    """
    fixed, per_px = model
    tile = auto_tile(h, w, budget_bytes, model, multiple, out_bytes)
    th, tw = _window(h, w, tile)
    usable = budget_bytes - (out_bytes if tile else 0)
    if (fixed + per_px * th * tw) * SAFETY <= VERIFY_FROM * usable:
        return tile, None
    sh, sw = (max(int(side / math.sqrt(2)) // multiple * multiple, min(side, MIN_TILE)) for side in (th, tw))
    per_px = max(per_px, (measure(sh, sw) - fixed) / (sh * sw))
    tile = auto_tile(h, w, budget_bytes, (fixed, per_px), multiple, out_bytes, safety=REFIT_SAFETY)
    for _ in range(rounds):
        th, tw = _window(h, w, tile)
        usable = budget_bytes - (out_bytes if tile else 0)
        peak = measure(th, tw)
        if peak * VERIFY_HEADROOM <= usable or tile == MIN_TILE:
            break
        shrunk = int(math.sqrt(th * tw * max(usable, 0) / (peak * VERIFY_HEADROOM)))  # bytes ~ pixels
        if tile == 0:  # the whole image was measured too large, so a tile must be smaller than it
            shrunk = min(shrunk, max(h, w) - 1)
        tile = max(shrunk // multiple * multiple, MIN_TILE)
    return tile, peak


def _window(h, w, tile):
    return (h, w) if not tile else (min(tile, h), min(tile, w))


def held_memory(device='cpu'):
    """Bytes the process holds now (resident set on CPU, allocated tensors on CUDA): the weights, the image,
    the interpreter. ``--max-memory`` bounds the whole process, so a forward gets the budget minus this."""
    release_freed_memory(device)
    if str(device).startswith('cuda'):
        return torch.cuda.memory_allocated(device)
    from ecma_basicsr.bench.measure import current_rss
    return current_rss()


def measure_forward(net, in_ch, device='cpu'):
    """``measure(th, tw)`` for :func:`fit_tile`: peak bytes of one forward of a random th x tw input."""
    from ecma_basicsr.bench.measure import PeakMemory

    def measure(th, tw):
        release_freed_memory(device)
        x = torch.rand(1, in_ch, th, tw, device=device)
        with torch.inference_mode(), PeakMemory(device) as pm:
            net(x)
        return pm.peak_bytes

    return measure


def parse_bytes(text):
    """``'8G'``, ``'512M'``, ``'2.5GB'`` or a number of bytes -> bytes."""
    t = str(text).strip().upper().rstrip('B').rstrip('I')
    units = {'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(float(t))
    except ValueError:
        raise ValueError(f"'{text}' is not a memory size; write e.g. 8G, 512M or a number of bytes.") from None
