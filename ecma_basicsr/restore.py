"""``basicsr restore``: apply a trained network to real photos of any size, the way a user runs it.

Reads a file or a folder (PNG, JPEG, TIFF, BMP, WebP; 8- or 16-bit; gray, colour or with alpha; EXIF
orientation applied), runs the fused inference network (:func:`ecma_basicsr.archs.fuse_for_inference`)
whole or in blended tiles (:mod:`ecma_basicsr.tiling`), and writes PNGs with the input's bit depth and
channels; alpha is carried through untouched (resized with the image for SR). A file that cannot be read
is reported by name, the rest of the folder completes, and the exit status is 1 at the end.
"""
import argparse
import os
import os.path as osp
import sys
import time

from ecma_basicsr.errors import UserError

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')

SPEC_HELP = """\
network (the first argument), as in `basicsr bench`:
  PRESET[@WEIGHTS]              a preset label, e.g. ECMA-T, ECMA-SR, NAFNet-GoPro-width32, SwinIR-light-x4
                                (python -m ecma_basicsr.presets lists them)
  ARCH:key=value,...[@WEIGHTS]  a registered arch with constructor arguments (YAML values),
                                e.g. ECMA:variant=T,width=16 or ECMASR:upscale=2,enc_blocks=[1,1]
  PRESET:key=value[@WEIGHTS]    a preset with overrides, e.g. ECMA-T:large_kernel_mode=spatial
  OPTIONS.yml[@WEIGHTS]         a BasicSR option file; its path:pretrain_network_g names the weights
                                unless @WEIGHTS is given
examples:
  basicsr restore ECMA-T@experiments/ECMA-T_GoPro/models/net_g_latest.pth --input blurry/ --output sharp/
  basicsr restore options/table5_sr_x4/ECMA-SR_x4_test.yml --input photo.jpg --output sr/ --tile auto
  basicsr restore ECMASR:upscale=4@sr_x4.pth --input lr/ --output sr/ --tile 512 --tile-overlap 64

tiling: --tile auto (default) runs the whole image when its forward fits --max-memory (the whole process:
weights, image, forward, output) and picks the largest tile that fits otherwise (predicted from two small
probe forwards; a forward predicted to take over a quarter of the budget is measured once per image size and
the tile shrunk until it fits); tiles overlap by --tile-overlap input pixels and are blended linearly across the
overlap. ECMA's large kernels and GroupNorm see far beyond any overlap, so a tiled ECMA result is close to,
not equal to, the whole image; the README gives the measured gap (overlap 64 at tile 384 on DeepDeblur).
"""


class RestoreError(UserError):
    """Bad ``basicsr restore`` input (input path, image, weights); the message says the fix."""


def list_inputs(path):
    """The image files of ``path`` (a file or a folder), sorted; a clear error when there are none."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise RestoreError(f"--input '{path}' is neither an image file nor a folder.")
    files = sorted(osp.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTS) and osp.isfile(osp.join(path, f)))
    if not files:
        raise RestoreError(f"--input folder '{path}' holds no images ({', '.join(IMAGE_EXTS)}).")
    return files


def output_names(files, out_dir):
    """``{input: output path}``: ``stem.png``, or ``stem_ext.png`` for inputs whose stems collide.

    Raises:
        RestoreError: two inputs would still map to one output, or an output would overwrite its input.
    """
    stems = {}
    for f in files:
        stems.setdefault(osp.splitext(osp.basename(f))[0], []).append(f)
    names = {}
    for stem, group in stems.items():
        for f in group:
            ext = osp.splitext(f)[1].lstrip('.').lower()
            names[f] = osp.join(out_dir, f'{stem}.png' if len(group) == 1 else f'{stem}_{ext}.png')
    seen = {}
    for f, dest in names.items():
        if dest in seen:
            raise RestoreError(f"'{seen[dest]}' and '{f}' would both be written to '{dest}'; rename one of them.")
        seen[dest] = f
        if osp.abspath(dest) == osp.abspath(f):
            raise RestoreError(f"restoring '{f}' would overwrite it; choose another --output folder.")
    return names


def exif_orientation(path):
    """The EXIF orientation tag (1-8) of ``path``, 1 when there is none or it cannot be read."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # no EXIF support for this format / not an image PIL knows: cv2 decides below
        return 1


def apply_orientation(img, orientation):
    """Turn ``img`` (H x W [x C]) upright for EXIF ``orientation`` (TIFF 6.0 tag 274)."""
    import numpy as np
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
           7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


def read_image(path):
    """``(float32 H x W x C BGR image in [0, 1], alpha or None, dtype)``, as stored (bit depth, channels).

    Raises:
        RestoreError: unreadable file or a sample type other than 8/16-bit integers.
    """
    import cv2
    import numpy as np
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise RestoreError(f"cannot read image '{path}' (unsupported or truncated file).")
    if img.dtype not in (np.uint8, np.uint16):
        raise RestoreError(f"'{path}' has {img.dtype} samples; restore reads 8- and 16-bit images.")
    img = apply_orientation(img, exif_orientation(path))
    if img.ndim == 2:
        img = img[..., None]
    alpha = None
    if img.shape[2] == 4:
        img, alpha = img[..., :3], img[..., 3]
    elif img.shape[2] == 2:  # gray + alpha
        img, alpha = img[..., :1], img[..., 1]
    peak = float(np.iinfo(img.dtype).max)
    return img.astype(np.float32) / peak, alpha, img.dtype


def to_network(img, in_ch):
    """H x W x C image -> N x in_ch x H x W tensor batch (gray for colour nets: 3 copies; colour for gray nets:
    one image per channel)."""
    import numpy as np
    import torch
    c = img.shape[2]
    if c == in_ch:
        arr = img[..., ::-1] if c == 3 else img  # BGR -> RGB, BasicSR's convention
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    if c == 1 and in_ch == 3:
        return torch.from_numpy(np.ascontiguousarray(np.repeat(img, 3, axis=2).transpose(2, 0, 1)))[None]
    if c == 3 and in_ch == 1:
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[:, None]
    raise RestoreError(f'a {c}-channel image does not fit a network with {in_ch} input channels.')


def from_network(out, channels):
    """Network output -> H x W x ``channels`` float image (BGR), the inverse of :func:`to_network`."""
    import numpy as np
    arr = out.clamp(0, 1).float().cpu().numpy()
    if arr.shape[0] > 1:  # gray network over colour channels
        img = arr[:, 0].transpose(1, 2, 0)
    else:
        img = arr[0].transpose(1, 2, 0)
        img = img[..., ::-1] if img.shape[2] == 3 else img
    if channels == 1 and img.shape[2] == 3:  # colour network over a gray image: its luma (BT.601), as cv2
        img = (img[..., 2:3] * 0.299 + img[..., 1:2] * 0.587 + img[..., 0:1] * 0.114)
    return np.ascontiguousarray(img)


OUTPUT_BAND = 256  # output rows converted at a time by :func:`to_image`


def to_image(out, channels, dtype, band=OUTPUT_BAND):
    """Network output -> H x W x ``channels`` image of integer ``dtype``, rounded as :func:`from_network` * peak.

    Converted ``band`` rows at a time into the integer array: a whole-image float copy (several of them: clamp,
    reorder, scale, round) would cost more memory than the tiled forward that produced ``out`` (12000 x 16000 x 3
    float32 is 2.3 GB per copy).
    """
    import numpy as np
    peak = float(np.iinfo(dtype).max)
    h = out.shape[-2]
    img = None
    for r in range(0, h, band):
        part = from_network(out[..., r:r + band, :], channels)
        if img is None:
            img = np.empty((h, part.shape[1], part.shape[2]), dtype)
        np.multiply(part, peak, out=part)
        np.round(part, out=part)
        img[r:r + band] = np.clip(part, 0, peak)
    return img


def write_image(path, out, alpha, scale):
    """Write the integer image ``out`` (from :func:`to_image`) with ``alpha`` (resized for SR) as a PNG."""
    import cv2
    import numpy as np
    if alpha is not None:
        if scale != 1:
            alpha = cv2.resize(alpha, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_CUBIC)
        out = np.concatenate([out, alpha[..., None]], axis=2)
    if out.shape[2] == 1:
        out = out[..., 0]
    if not cv2.imwrite(path, out):
        raise RestoreError(f"cannot write '{path}'; check that the --output folder is writable.")


def check_device(device, precision):
    import torch
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise RestoreError(f"--device {device}: no CUDA GPU is visible to torch "
                           f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu.")
    if not (device == 'cpu' or device.startswith('cuda')):
        raise RestoreError(f"--device '{device}' is not cpu, cuda or cuda:N.")
    if precision != 'fp32' and not device.startswith('cuda'):
        raise RestoreError(f'--precision {precision} needs --device cuda; the CPU runs fp32.')


def build_parser():
    parser = argparse.ArgumentParser(prog='basicsr restore', description=__doc__.split('\n')[0],
                                     epilog=SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('network', help='the network and its weights (grammar below)')
    parser.add_argument('--input', required=True, help='an image file or a folder of images')
    parser.add_argument('--output', required=True, help='folder for the restored PNGs (created if missing)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
    parser.add_argument('--tile', default='auto',
                        help="tile side in input pixels, 'auto' (default: whole image if it fits --max-memory) "
                             "or 0 (always the whole image)")
    parser.add_argument('--tile-overlap', type=int, default=64, help='overlap of tiles in input pixels (default 64)')
    parser.add_argument('--max-memory', default='8G',
                        help='memory budget of the whole process for --tile auto: weights, image, the forward and, '
                             'when tiled, the output buffers (default 8G; sized for --batch 1: N images or tiles '
                             'per forward need about N times more)')
    parser.add_argument('--batch', type=int, default=1, help='images (same size) or tiles per forward (default 1)')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'fp16', 'bf16'),
                        help='fp16/bf16 autocast on GPU (default fp32)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.tile != 'auto':
        try:
            args.tile = int(args.tile)
            assert args.tile >= 0
        except (ValueError, AssertionError):
            raise RestoreError(f"--tile '{args.tile}' must be 'auto', 0 or a positive number of pixels.") from None
    if args.batch < 1 or args.tile_overlap < 0:
        raise RestoreError('--batch must be >= 1 and --tile-overlap >= 0.')
    if args.tile not in ('auto', 0) and args.tile_overlap >= args.tile:
        raise RestoreError(f'--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile}).')
    if osp.exists(args.output) and not osp.isdir(args.output):
        raise RestoreError(f"--output '{args.output}' is a file; give a folder for the restored images.")
    from ecma_basicsr.tiling import parse_bytes
    try:
        budget = parse_bytes(args.max_memory)
    except ValueError as err:
        raise RestoreError(f'--max-memory: {err}') from None

    import torch
    from tqdm import tqdm

    from ecma_basicsr.archs import fuse_for_inference
    from ecma_basicsr.bench.networks import build, parse_spec
    from ecma_basicsr.tiling import (
        count_tiles,
        fit_tile,
        held_memory,
        measure_forward,
        memory_model,
        output_bytes,
        release_freed_memory,
        tiled_forward,
    )

    check_device(args.device, args.precision)
    spec = parse_spec(args.network)
    if not spec.checkpoint:
        raise RestoreError(f"'{args.network}' names no weights: append @PATH (e.g. {args.network}@net_g_latest.pth) "
                           'or use an option file whose path:pretrain_network_g is set.')
    if not osp.isfile(spec.checkpoint):
        raise RestoreError(f"weights file '{spec.checkpoint}' does not exist.")
    files = list_inputs(args.input)
    names = output_names(files, args.output)
    net = fuse_for_inference(build(spec, args.device), inplace=True)
    os.makedirs(args.output, exist_ok=True)
    if args.device == 'cpu':
        from ecma_basicsr.bench.measure import keep_freed_memory
        # glibc would return and page-fault back each large activation (measured: 90 s of system time on a
        # 4000x3000 photo); set before the memory probes so the model sees the allocator as it will run
        keep_freed_memory()
    model = memory_model(net, spec.in_ch, args.device) if args.tile == 'auto' else None
    measure, fitted = measure_forward(net, spec.in_ch, args.device), {}
    autocast = (torch.autocast('cuda', dtype=torch.float16 if args.precision == 'fp16' else torch.bfloat16)
                if args.precision != 'fp32' else torch.autocast('cpu', enabled=False))

    failed, done = [], 0

    def after_tile(tbar):
        def step(n):
            tbar.update(n)
            if args.tile == 'auto':  # the heap kept from one tile, fragmented, grew 0.2-0.3 GiB per forward
                release_freed_memory(args.device)
        return step
    bar = tqdm(total=len(files), unit='img', disable=args.quiet or None, file=sys.stderr, dynamic_ncols=True)
    pending = []  # images of one size, batched into one forward

    def run(batch_items):
        nonlocal done
        x = torch.cat([item['x'] for item in batch_items]).to(args.device)
        h, w = x.shape[-2:]
        image_bytes = sum(h * w * spec.scale ** 2 * (item['channels'] + (item['alpha'] is not None))
                          * item['dtype'].itemsize for item in batch_items)
        tile = args.tile
        if tile == 'auto':
            out_bytes = output_bytes(x, spec.scale, image_bytes)
            key = (x.shape, out_bytes)
            if key not in fitted:  # one check per image size: a folder of same-sized photos pays it once
                held = held_memory(args.device)
                fitted[key], peak = fit_tile(h, w, budget - held, model, measure, out_bytes=out_bytes)
                if peak is not None:
                    tqdm.write(f'{h}x{w}: tile {fitted[key] or "whole"} checked: one forward peaked at '
                               f'{peak / 2**30:.2f} GiB, + {out_bytes / 2**30:.2f} GiB of output buffers, + '
                               f'{held / 2**30:.2f} GiB held (weights, image, libraries)', file=sys.stderr)
            tile = fitted[key]
        n_tiles = count_tiles(h, w, tile, args.tile_overlap)
        tbar = tqdm(total=n_tiles, unit='tile', leave=False, disable=args.quiet or n_tiles == 1 or None,
                    file=sys.stderr, dynamic_ncols=True)
        start = time.perf_counter()
        try:
            with torch.inference_mode(), autocast:
                out = tiled_forward(net, x, spec.scale, tile, args.tile_overlap, args.batch, after_tile(tbar))
        except (MemoryError, RuntimeError) as err:
            if not isinstance(err, MemoryError) and 'out of memory' not in str(err).lower():
                raise
            tbar.close()
            how = f'tile {tile}' if tile else 'the whole image'
            for item in batch_items:
                failed.append((item['path'], f'out of memory with {how} ({h}x{w}); give a smaller --tile '
                                             'or --max-memory'))
                bar.update(1)
            return
        tbar.close()
        ms = (time.perf_counter() - start) * 1000 / len(batch_items)
        k = 0
        for item in batch_items:
            m = item['x'].shape[0]
            try:
                write_image(item['dest'], to_image(out[k:k + m], item['channels'], item['dtype']), item['alpha'],
                            spec.scale)
                done += 1
                how = f'tiles {tile}/{args.tile_overlap} ({n_tiles})' if n_tiles > 1 else 'whole'
                tqdm.write(f"{item['path']} -> {item['dest']}  {h}x{w} -> {out.shape[-2]}x{out.shape[-1]}  "
                           f"{how}  {ms:.0f} ms", file=sys.stdout)
            except RestoreError as err:
                failed.append((item['path'], str(err)))
            k += m
            bar.update(1)

    for path in files:
        try:
            img, alpha, dtype = read_image(path)
            x = to_network(img, spec.in_ch)
        except RestoreError as err:
            failed.append((path, str(err)))
            tqdm.write(f'skipped {path}: {err}', file=sys.stderr)
            bar.update(1)
            continue
        item = dict(path=path, dest=names[path], x=x, alpha=alpha, dtype=dtype, channels=img.shape[2])
        if pending and (pending[0]['x'].shape != x.shape or len(pending) >= args.batch):
            run(pending)
            pending = []
        pending.append(item)
    if pending:
        run(pending)
    bar.close()
    if failed:
        print(f'restored {done} of {len(files)} images; {len(failed)} failed:', file=sys.stderr)
        for path, err in failed:
            print(f'  {path}: {err}', file=sys.stderr)
        return 1
    print(f'restored {done} images into {args.output}')
    return 0
