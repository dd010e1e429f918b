"""Shared helpers of the dataset preparation tools: strict image I/O, crops, parallel jobs, manifests.

Everything a subcommand needs besides its own layout rules lives here, so that every dataset
gets the same guarantees:

* images are read strictly (:func:`read_image`): a missing, unreadable or truncated file raises
  :class:`ImageReadError` with its path instead of being skipped;
* output files appear atomically (:func:`write_png_atomic`), so a killed run never leaves a
  half-written PNG that a rerun would take as finished;
* :func:`run_jobs` maps a worker over the source items (optionally in ``--workers`` processes,
  with a tqdm progress bar) and streams the encoded images into LMDBs through
  :class:`~datasets_prep.lmdb_writer.LmdbWriter`; LMDBs that are already complete are skipped;
* :func:`update_manifest` records in ``<dst>/datasets_prep.json`` which LMDBs and folders form
  pairs, so ``python -m datasets_prep verify <dst>`` can check them later.
"""
import json
import multiprocessing
import os
import os.path as osp
import sys

import cv2
import numpy as np
from tqdm import tqdm

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
MANIFEST = 'datasets_prep.json'

_PNG_END = b'IEND\xaeB`\x82'
_JPEG_END = b'\xff\xd9'


class PrepError(Exception):
    """A problem the user must fix (wrong layout, bad image, bad option); the message says how."""


class ImageReadError(PrepError):
    """One source image that cannot be used; the message starts with its path."""


def note(msg):
    """Print an informational line (not an error) in a way that stays readable next to tqdm."""
    tqdm.write(f'[datasets_prep] {msg}', file=sys.stdout)


def list_images(folder, exts=IMAGE_EXTS):
    """Sorted file names (not paths) of the images directly inside ``folder``."""
    exts = tuple(e.lower() for e in exts)
    return sorted(n for n in os.listdir(folder)
                  if n.lower().endswith(exts) and not n.startswith('.') and osp.isfile(osp.join(folder, n)))


def describe_dir(path, limit=8):
    """Short human description of what a folder holds, for 'expected X, found Y' messages."""
    if not osp.exists(path):
        return f"'{path}' does not exist"
    if not osp.isdir(path):
        return f"'{path}' is a file, not a folder"
    names = sorted(os.listdir(path))
    if not names:
        return f"'{path}' is empty"
    shown = ', '.join(n + ('/' if osp.isdir(osp.join(path, n)) else '') for n in names[:limit])
    more = f', ... ({len(names)} entries)' if len(names) > limit else ''
    return f"'{path}' holds: {shown}{more}"


def _looks_truncated(data, ext):
    # cv2 decodes a truncated JPEG without an error (it fills the rest with grey) and some
    # truncated PNGs too, so we check the end-of-image markers ourselves.
    tail = data[-64:]
    if ext == '.png':
        return _PNG_END not in tail
    if ext in ('.jpg', '.jpeg'):
        return _JPEG_END not in tail
    return False


def read_image(path, return_converted=False):
    """Read an 8-bit image as a BGR ``uint8`` array of shape (h, w, 3), strictly.

    Gray images (e.g. Set14 ``bridge.png``) are replicated to 3 channels, because BasicSR reads
    every image with ``cv2.IMREAD_COLOR`` and the shapes recorded in ``meta_info.txt`` must
    match what it will decode.

    Args:
        path (str): Image file.
        return_converted (bool): Also return whether the file was not already 3-channel (so a
            caller that wants to copy the file byte for byte knows it must re-encode instead).

    Returns:
        numpy.ndarray: The image, BGR, uint8, (h, w, 3) (and the flag when asked).

    Raises:
        ImageReadError: The file is missing, unreadable, truncated, not 8-bit, or has alpha.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise ImageReadError(f'{path}: cannot read the file ({err.strerror}).') from None
    ext = osp.splitext(path)[1].lower()
    if not data:
        raise ImageReadError(f'{path}: the file is empty (0 bytes); download or unpack it again.')
    if _looks_truncated(data, ext):
        raise ImageReadError(f'{path}: the image is truncated (no end-of-image marker); '
                             'download or unpack it again.')
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f'{path}: not a decodable image ({len(data)} bytes); download or unpack it again.')
    if img.dtype != np.uint8:
        raise ImageReadError(f'{path}: {img.dtype} pixels; these tools expect 8-bit images as in the '
                             'official archives.')
    converted = img.ndim == 2 or img.shape[2] != 3
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        raise ImageReadError(f'{path}: has an alpha channel (4 channels); expected 3-channel RGB.')
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return (img, converted) if return_converted else img


def encode_png(img, compress_level):
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise PrepError(f'cv2 could not encode an image of shape {img.shape} as PNG.')
    return buf.tobytes()


def _atomic_write_bytes(path, data):
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def write_png_atomic(path, img, compress_level=3):
    """Write ``img`` as PNG so that ``path`` either does not exist or is complete.

    Compression 3 is what BasicSR's ``extract_subimages.py`` uses for folders.
    """
    _atomic_write_bytes(path, encode_png(img, compress_level))


def copy_atomic(src, dst):
    """Copy a file byte for byte, atomically (same guarantee as :func:`write_png_atomic`)."""
    with open(src, 'rb') as f:
        _atomic_write_bytes(dst, f.read())


def crop_positions(length, crop, step, thresh=0, what='image'):
    """Top-left offsets of a sliding-window crop along one axis, exactly as BasicSR does it.

    BasicSR's ``extract_subimages.py`` uses ``range(0, length - crop + 1, step)`` and then adds
    ``length - crop`` when more than ``thresh`` pixels would otherwise be left over.

    Raises:
        PrepError: ``length < crop`` (BasicSR would fail with an IndexError here).
    """
    if length < crop:
        raise PrepError(f'{what}: size {length} is smaller than the crop size {crop}; lower --crop '
                        f'(and --step) or remove the image.')
    pos = list(range(0, length - crop + 1, step))
    if length - (pos[-1] + crop) > thresh:
        pos.append(length - crop)
    return pos


def sliding_crops(img, crop, step, thresh=0, what='image'):
    """Yield ``(index, y, x, patch)`` with 1-based ``index`` in BasicSR's order (rows, then columns)."""
    h, w = img.shape[:2]
    index = 0
    for y in crop_positions(h, crop, step, thresh, what):
        for x in crop_positions(w, crop, step, thresh, what):
            index += 1
            yield index, y, x, img[y:y + crop, x:x + crop]


def crop_key(stem, index):
    """Sub-image name used by BasicSR/NAFNet: ``<stem>_s001``."""
    return f'{stem}_s{index:03d}'


class JobError:
    """Returned (not raised) by a worker so one bad image does not hide the others."""

    def __init__(self, message):
        self.message = message


def _call(job):
    fn, item = job
    try:
        return fn(item)
    except PrepError as err:
        return JobError(str(err))


def parallel_map(fn, items, workers=1, desc='', unit='img'):
    """Ordered ``map(fn, items)`` with a progress bar, in ``workers`` processes when > 1.

    Worker exceptions of type :class:`PrepError` come back as :class:`JobError` objects.
    """
    items = list(items)
    jobs = [(fn, item) for item in items]
    bar = dict(total=len(items), desc=desc, unit=unit, disable=None, leave=False, file=sys.stderr)
    if workers <= 1 or len(items) <= 1:
        for job in tqdm(jobs, **bar):
            yield _call(job)
        return
    with multiprocessing.get_context('fork').Pool(workers) as pool:
        yield from tqdm(pool.imap(_call, jobs, chunksize=1), **bar)


def run_jobs(items, fn, lmdb_paths, workers=1, desc='', compress_level=1):
    """Run ``fn`` over ``items`` and write what it returns into the LMDBs that are not complete yet.

    Args:
        items (list): One entry per source image (or pair); must be picklable.
        fn (callable): Module-level function ``fn(item) -> {label: [(key, png_bytes, (h, w, c)), ...]}``.
            It may also write folder outputs itself (atomically).
        lmdb_paths (dict): ``label -> path.lmdb``.
        workers (int): Processes for reading/encoding.
        desc (str): Progress bar label.
        compress_level (int): PNG level recorded in ``meta_info.txt`` (the bytes come from ``fn``).

    Returns:
        dict: ``label -> number of entries`` for the LMDBs written in this call.

    Raises:
        PrepError: any worker failed; every failing image is listed and no LMDB is finalised.
    """
    from .lmdb_writer import LmdbWriter
    writers = {}
    try:
        for label, path in lmdb_paths.items():
            writers[label] = LmdbWriter(path, compress_level=compress_level)
        errors = []
        for result in parallel_map(fn, items, workers, desc):
            if isinstance(result, JobError):
                errors.append(result.message)
                continue
            for label, entries in result.items():
                writer = writers.get(label)
                if writer is None:
                    continue
                for key, data, shape in entries:
                    writer.put_encoded(key, data, shape)
        if errors:
            shown = '\n  '.join(errors[:50])
            more = f'\n  ... and {len(errors) - 50} more' if len(errors) > 50 else ''
            raise PrepError(f'{len(errors)} source file(s) could not be used:\n  {shown}{more}')
        counts = {}
        for label, writer in writers.items():
            counts[label] = writer.commit()
        return counts
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def check_workers(workers):
    if workers < 1:
        raise PrepError(f'--workers must be >= 1, got {workers}.')
    return workers


# Set by ``sample``: its sets are small on purpose, so "the official release has 2103" is noise there.
QUIET_COUNTS = False


def expected_count(name, found, official):
    """Note (not fail) when a split has a different size than the official release."""
    if found != official and not QUIET_COUNTS:
        note(f'{name}: found {found}; the official release has {official}. Continuing with what is there.')


def update_manifest(dst, dataset, groups):
    """Record pairs (LMDB groups and folder pairs) in ``<dst>/datasets_prep.json`` for ``verify``.

    Args:
        dst (str): Dataset output folder.
        dataset (str): Dataset name (for humans).
        groups (list[dict]): Each ``{'kind': 'lmdb', 'paths': [...], 'count': n}`` or
            ``{'kind': 'folders', 'lq': ..., 'gt': ..., 'filename_tmpl': '{}', 'scale': s, 'count': n}``,
            paths relative to ``dst``.
    """
    from .lmdb_writer import lmdb_count
    for group in groups:
        if group['kind'] == 'lmdb' and group.get('count') is None:
            group['count'] = lmdb_count(osp.join(dst, group['paths'][0]))
    path = osp.join(dst, MANIFEST)
    data = {'dataset': dataset, 'groups': []}
    if osp.isfile(path):
        with open(path) as f:
            data = json.load(f)
    ids = {_group_id(g): i for i, g in enumerate(data['groups'])}
    for group in groups:
        gid = _group_id(group)
        if gid in ids:
            data['groups'][ids[gid]] = group
        else:
            ids[gid] = len(data['groups'])
            data['groups'].append(group)
    data['dataset'] = dataset
    os.makedirs(dst, exist_ok=True)
    _atomic_write_bytes(path, (json.dumps(data, indent=1) + '\n').encode())


def _group_id(group):
    if group['kind'] == 'lmdb':
        return ('lmdb',) + tuple(group['paths'])
    return ('folders', group['lq'], group['gt'])


def sanitize_key(stem):
    """A BasicSR-safe key for a file stem: dots and spaces become underscores.

    BasicSR rebuilds LMDB keys with ``line.split('.')[0]`` and meta-info names with
    ``split(' ')``, so neither may occur in a key (HIDE's ``1fromGOPR1096.MP4`` for example).
    """
    return stem.replace('.', '_').replace(' ', '_')


def lcm(values):
    out = 1
    for v in values:
        out = out * v // np.gcd(out, v)
    return int(out)


def _write_copy(src, img, converted, dst):
    """Put a source image at ``dst`` (PNG): byte copy when it already is a 3-channel PNG."""
    if not converted and src.lower().endswith('.png'):
        copy_atomic(src, dst)
    else:
        write_png_atomic(dst, img)


def pair_worker(item):
    """Worker for paired datasets: read one (lq, gt) pair strictly, write folders, return LMDB entries.

    ``item`` keys: ``key``, ``lq_src``, ``gt_src``; optional ``lq_dst``/``gt_dst`` (folder files to
    write), ``labels`` (LMDB labels wanted: subset of {'lq', 'gt'}), ``crop`` ((crop, step, thresh)
    for sub-images or None for whole images), ``level`` (PNG compression for LMDB values).
    """
    lq, lq_conv = read_image(item['lq_src'], return_converted=True)
    gt, gt_conv = read_image(item['gt_src'], return_converted=True)
    if lq.shape != gt.shape:
        raise PrepError(f"{item['lq_src']}: shape {lq.shape} differs from its ground truth {item['gt_src']} "
                        f'{gt.shape}; the pair does not match.')
    for img, conv, src, dst in ((lq, lq_conv, item['lq_src'], item.get('lq_dst')),
                                (gt, gt_conv, item['gt_src'], item.get('gt_dst'))):
        if dst:
            _write_copy(src, img, conv, dst)
    out = {}
    level = item.get('level', 1)
    for label, img in (('lq', lq), ('gt', gt)):
        if label not in item.get('labels', ()):
            continue
        if item.get('crop'):
            crop, step, thresh = item['crop']
            out[label] = [(crop_key(item['key'], idx), encode_png(patch, level), patch.shape)
                          for idx, _, _, patch in sliding_crops(img, crop, step, thresh, item[f'{label}_src'])]
        else:
            out[label] = [(item['key'], encode_png(img, level), img.shape)]
    return out


def prep_pairs(pairs, lmdbs=None, folders=None, crop=None, workers=1, desc=''):
    """Write paired images into LMDBs and/or folders, skipping what is already finished.

    Args:
        pairs (list[tuple]): ``(key, lq_src, gt_src)``; ``key`` is the output name without extension.
        lmdbs (dict | None): ``{'lq': path.lmdb, 'gt': path.lmdb}``.
        folders (dict | None): ``{'lq': dir, 'gt': dir}``; files are ``<key>.png``.
        crop (tuple | None): ``(crop, step, thresh)`` to store sliding-window sub-images in the LMDBs
            (keys ``<key>_s001`` ...); folders always get whole images.
        workers (int): Processes.
        desc (str): Progress label.

    Returns:
        dict: Entries written per LMDB label in this call (empty when all was finished).
    """
    from .lmdb_writer import check_key, is_complete
    keys = [p[0] for p in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise PrepError(f'two source pairs map to the same output name(s): {dup[:5]}.')
    for key in keys:
        check_key(key, desc)
    lmdbs = {label: path for label, path in (lmdbs or {}).items() if not is_complete(path)}
    items = []
    for key, lq_src, gt_src in pairs:
        item = {'key': key, 'lq_src': lq_src, 'gt_src': gt_src, 'labels': frozenset(lmdbs), 'crop': crop}
        for label in ('lq', 'gt'):
            if folders:
                dst = osp.join(folders[label], key + '.png')
                if not osp.exists(dst):
                    item[f'{label}_dst'] = dst
        if lmdbs or item.get('lq_dst') or item.get('gt_dst'):
            items.append(item)
    if not items:
        note(f'{desc}: already complete, skipped.')
        return {}
    if not lmdbs:
        # Folders only: the LMDBs (if any) are finished, so only the missing files are read.
        errors = [r.message for r in parallel_map(pair_worker, items, workers, desc) if isinstance(r, JobError)]
        if errors:
            raise PrepError(f'{len(errors)} source file(s) could not be used:\n  ' + '\n  '.join(errors[:50]))
        return {}
    if len(items) != len(pairs):
        # Some folder files exist, but an LMDB needs every pair: read them all.
        done = {it['key'] for it in items}
        items += [{'key': k, 'lq_src': a, 'gt_src': b, 'labels': frozenset(lmdbs), 'crop': crop}
                  for k, a, b in pairs if k not in done]
        order = {k: i for i, k in enumerate(keys)}
        items.sort(key=lambda it: order[it['key']])
    return run_jobs(items, pair_worker, lmdbs, workers, desc)


def unpaired_message(a, count_a, only_a, b, count_b, only_b, what='images', shown=5):
    """One line: which entries of two paired sets have no partner, the first few on each side."""
    def first(items):
        return ', '.join(items[:shown]) + (f' ... ({len(items)} in all)' if len(items) > shown else '')
    parts = []
    if only_a:
        parts.append(f"only in '{a}': {first(only_a)}")
    if only_b:
        parts.append(f"only in '{b}': {first(only_b)}")
    counts = (f'both hold {count_a} {what} but different ones' if count_a == count_b else
              f"'{a}' holds {count_a} {what}, '{b}' holds {count_b}")
    return f"unpaired {what}: {counts}; {'; '.join(parts)}."
