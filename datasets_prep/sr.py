"""Super-resolution data: DIV2K training LMDBs and the SR test sets (Set5, Set14, B100, Urban100, Manga109).

DIV2K (subcommand ``div2k``)
    Source: ``DIV2K_train_HR/0001.png ...`` and/or ``DIV2K_valid_HR/0801.png ...`` under ``--src``
    (or ``--src/DIV2K``). Output, as BasicSR's ``extract_subimages.py`` + ``create_lmdb.py``::

        DIV2K_train_LR_bicubic/X{s}/0001x{s}.png     full LR images (MATLAB bicubic of the HR)
        DIV2K_train_HR_sub.lmdb                      480x480 HR sub-images, step 240, key 0001_s001
        DIV2K_train_LR_bicubic_X{s}_sub.lmdb         the matching LR sub-images (480/s, step 240/s)
        DIV2K_valid_HR/0801.png                      (copied when --dst is not the source)
        DIV2K_valid_LR_bicubic/X{s}/0801x{s}.png

    The HR is first mod-cropped to the least common multiple of the scales (12 for x2/x3/x4), so
    that every LR sub-image is exactly its HR sub-image downscaled and all LMDBs share their keys;
    DIV2K's HR sizes are multiples of 12 already, so this changes nothing on the real data.

SR test sets (subcommands ``set5`` ... ``manga109``, or ``srbench`` for every set found under a
benchmark root; usage lines and defaults: ``datasets_prep.commands``). Source: ``HR/`` (EDSR
``benchmark.tar`` layout) or the images directly in ``--src``. Output (EDSR layout, the one the
option files use with ``filename_tmpl: '{}x4'``)::

    HR/<name>.png                  the HR, 3-channel (Set14 bridge.png is gray in some copies)
    GTmod{s}/<name>.png            the HR mod-cropped to the scale
    LR_bicubic/X{s}/<name>x{s}.png  MATLAB bicubic of GTmod{s}

``HR/`` is kept uncropped because BasicSR crops the GT to ``LR * scale`` at test time, which is
the standard protocol. When the source ships ``LR_bicubic/X{s}`` images too, ours are compared with
them and the agreement is printed.
"""
import os
import os.path as osp

import numpy as np

from .bicubic import bicubic_downscale, load_basicsr, mod_crop
from .common import (
    JobError,
    PrepError,
    _write_copy,
    crop_key,
    describe_dir,
    encode_png,
    expected_count,
    lcm,
    list_images,
    note,
    parallel_map,
    read_image,
    run_jobs,
    sliding_crops,
    update_manifest,
    write_png_atomic,
)
from .lmdb_writer import is_complete, lmdb_count

SR_SETS = {
    # name: (official image count, accepted folder names under a benchmark root)
    'Set5': (5, ('Set5',)),
    'Set14': (14, ('Set14',)),
    'B100': (100, ('B100', 'BSD100', 'BSDS100')),
    'Urban100': (100, ('Urban100',)),
    'Manga109': (109, ('Manga109',)),
}


# ----------------------------------------------------------------------------------------- DIV2K
def _div2k_root(src):
    for root in (src, osp.join(src, 'DIV2K')):
        if any(osp.isdir(osp.join(root, d)) for d in ('DIV2K_train_HR', 'DIV2K_valid_HR')):
            return root
    raise PrepError(f"DIV2K: expected 'DIV2K_train_HR/' (0001.png ... 0800.png) and/or 'DIV2K_valid_HR/' "
                    f"(0801.png ... 0900.png) in '{src}' (or in '{src}/DIV2K'), as DIV2K_train_HR.zip and "
                    f'DIV2K_valid_HR.zip unpack; but {describe_dir(src)}.')


def _read_or_make_lr(hr, lr_path, scale):
    """Load an LR file written by an earlier run (checking its size), or make and write it."""
    want = (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    if osp.exists(lr_path):
        lr = read_image(lr_path)
        if lr.shape != want:
            raise PrepError(f'{lr_path}: shape {lr.shape}, expected {want} (HR mod-cropped / {scale}); '
                            'delete it so it is made again.')
        return lr
    lr = bicubic_downscale(hr, scale)
    write_png_atomic(lr_path, lr)
    return lr


def _div2k_train_worker(item):
    hr = mod_crop(read_image(item['hr']), item['mod'])
    crop, step, thresh = item['crop']
    out = {}
    if 'gt' in item['labels']:
        out['gt'] = [(crop_key(item['stem'], i), encode_png(p, 1), p.shape)
                     for i, _, _, p in sliding_crops(hr, crop, step, thresh, item['hr'])]
    for scale, lr_path in item['lr'].items():
        lr = _read_or_make_lr(hr, lr_path, scale)
        label = f'x{scale}'
        if label in item['labels']:
            out[label] = [(crop_key(item['stem'], i), encode_png(p, 1), p.shape)
                          for i, _, _, p in sliding_crops(lr, crop // scale, step // scale, thresh // scale,
                                                          lr_path)]
    return out


def _div2k_valid_worker(item):
    hr, converted = read_image(item['hr'], return_converted=True)
    if item.get('hr_dst') and not osp.exists(item['hr_dst']):
        _write_copy(item['hr'], hr, converted, item['hr_dst'])
    for scale, lr_path in item['lr'].items():
        if not osp.exists(lr_path):
            write_png_atomic(lr_path, bicubic_downscale(mod_crop(hr, scale), scale))
    return {}


def check_crop(crop, step, scales):
    if crop <= 0 or step <= 0:
        raise PrepError(f'--crop and --step must be positive, got {crop} and {step}.')
    bad = [s for s in scales if crop % s or step % s]
    if bad:
        raise PrepError(f'--crop {crop} and --step {step} must be divisible by every scale; not by {bad}.')


def prep_div2k(src, dst, scales=(2, 3, 4), crop=480, step=240, thresh=0, splits=('train', 'valid'), workers=1):
    """Build the DIV2K training LMDBs and validation folders (see the module docstring).

    Args:
        src (str): Folder holding ``DIV2K_train_HR`` and/or ``DIV2K_valid_HR``.
        dst (str): Output folder (``datasets/DIV2K``); may be the same as ``src``.
        scales (tuple[int]): LR scales.
        crop, step, thresh (int): HR sub-image size, stride and BasicSR's thresh_size.
        splits (tuple[str]): 'train' and/or 'valid'; each must be present in ``src``.
        workers (int): Processes.
    """
    scales = sorted(set(int(s) for s in scales))
    check_crop(crop, step, scales)
    root = _div2k_root(src)
    load_basicsr()
    mod = lcm(scales)
    groups = []
    train_hr = osp.join(root, 'DIV2K_train_HR')
    valid_hr = osp.join(root, 'DIV2K_valid_HR')
    for split, folder, zipname in (('train', train_hr, 'DIV2K_train_HR.zip'),
                                   ('valid', valid_hr, 'DIV2K_valid_HR.zip')):
        if split in splits and not osp.isdir(folder):
            raise PrepError(f"DIV2K: --splits includes '{split}' but '{folder}/' does not exist (unpack {zipname} "
                            f"there, or leave '{split}' out of --splits); {describe_dir(root)}.")
    if 'train' in splits:
        names = list_images(train_hr, ('.png',))
        if not names:
            raise PrepError(f"DIV2K: no .png images in '{train_hr}'; {describe_dir(train_hr)}.")
        expected_count('DIV2K train HR images', len(names), 800)
        lmdbs = {'gt': osp.join(dst, 'DIV2K_train_HR_sub.lmdb')}
        lmdbs.update({f'x{s}': osp.join(dst, f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb') for s in scales})
        todo = {label: path for label, path in lmdbs.items() if not is_complete(path)}
        items = []
        for name in names:
            stem = osp.splitext(name)[0]
            lr = {s: osp.join(dst, 'DIV2K_train_LR_bicubic', f'X{s}', f'{stem}x{s}.png') for s in scales}
            if todo or not all(osp.exists(p) for p in lr.values()):
                items.append({'hr': osp.join(train_hr, name), 'stem': stem, 'lr': lr, 'mod': mod,
                              'crop': (crop, step, thresh), 'labels': frozenset(todo)})
        if items:
            counts = run_jobs(items, _div2k_train_worker, todo, workers, 'DIV2K train')
            note(f'DIV2K train: wrote {counts} sub-images into {sorted(todo.values())}.')
        else:
            note('DIV2K train: already complete, skipped.')
        groups.append({'kind': 'lmdb', 'count': lmdb_count(lmdbs['gt']),
                       'paths': [osp.relpath(lmdbs[k], dst) for k in ['gt'] + [f'x{s}' for s in scales]]})
    if 'valid' in splits:
        names = list_images(valid_hr, ('.png',))
        expected_count('DIV2K valid HR images', len(names), 100)
        hr_out = osp.join(dst, 'DIV2K_valid_HR')
        same = osp.abspath(hr_out) == osp.abspath(valid_hr)
        items = []
        for name in names:
            stem = osp.splitext(name)[0]
            lr = {s: osp.join(dst, 'DIV2K_valid_LR_bicubic', f'X{s}', f'{stem}x{s}.png') for s in scales}
            hr_dst = None if same else osp.join(hr_out, name)
            if any(not osp.exists(p) for p in lr.values()) or (hr_dst and not osp.exists(hr_dst)):
                items.append({'hr': osp.join(valid_hr, name), 'hr_dst': hr_dst, 'lr': lr})
        _run_folder_jobs(items, _div2k_valid_worker, workers, 'DIV2K valid')
        for s in scales:
            groups.append({'kind': 'folders', 'lq': f'DIV2K_valid_LR_bicubic/X{s}', 'gt': 'DIV2K_valid_HR',
                           'filename_tmpl': f'{{}}x{s}', 'scale': s, 'count': len(names)})
    update_manifest(dst, 'DIV2K', groups)


def _run_folder_jobs(items, worker, workers, desc):
    if not items:
        note(f'{desc}: already complete, skipped.')
        return
    errors = [r.message for r in parallel_map(worker, items, workers, desc) if isinstance(r, JobError)]
    if errors:
        raise PrepError(f'{len(errors)} source file(s) could not be used:\n  ' + '\n  '.join(errors[:50]))


# -------------------------------------------------------------------------------- SR test sets
def _srbench_hr_dir(src, name):
    candidates = [osp.join(src, 'HR'), src]
    for folder in candidates:
        if osp.isdir(folder) and list_images(folder):
            return folder
    raise PrepError(f"{name}: expected the HR images in '{osp.join(src, 'HR')}/' (EDSR benchmark.tar layout, "
                    f"e.g. {name}/HR/baby.png) or directly in '{src}/'; but {describe_dir(src)}.")


def _shipped_lr(src, stem, scale):
    for rel in (f'LR_bicubic/X{scale}/{stem}x{scale}.png', f'LR_bicubic/X{scale}/{stem}_LRBI_x{scale}.png'):
        path = osp.join(src, rel)
        if osp.isfile(path):
            return path
    return None


def _srbench_worker(item):
    hr, converted = read_image(item['hr'], return_converted=True)
    if not osp.exists(item['hr_dst']):
        _write_copy(item['hr'], hr, converted, item['hr_dst'])
    stats = {}
    for scale, (gt_dst, lr_dst, shipped) in item['scales'].items():
        gt = mod_crop(hr, scale)
        if not osp.exists(gt_dst):
            write_png_atomic(gt_dst, gt)
        if osp.exists(lr_dst):
            lr = read_image(lr_dst)
        else:
            lr = bicubic_downscale(gt, scale)
            write_png_atomic(lr_dst, lr)
        if shipped:
            ref = read_image(shipped)
            if ref.shape != lr.shape:
                stats[scale] = {'shape': (ref.shape, lr.shape)}
                continue
            diff = np.abs(ref.astype(np.int16) - lr.astype(np.int16))
            inner = diff[2:-2, 2:-2]
            stats[scale] = {'max': int(diff.max()), 'exact': int((diff == 0).sum()), 'n': int(diff.size),
                            'within1': int((diff <= 1).sum()), 'inner_max': int(inner.max()) if inner.size else 0}
    return stats


def prep_srbench_set(src, dst, name, scales=(2, 3, 4), workers=1):
    """Build one SR test set (see the module docstring).

    Returns:
        dict: ``scale -> {'images', 'max', 'exact', 'within1', 'n', 'inner_max'}`` comparing our LR
        images with the ones shipped in ``src/LR_bicubic`` (empty when none are shipped).
    """
    scales = sorted(set(int(s) for s in scales))
    hr_dir = _srbench_hr_dir(src, name)
    load_basicsr()
    names = list_images(hr_dir)
    official = SR_SETS.get(name, (None,))[0]
    if official:
        expected_count(f'{name} HR images', len(names), official)
    items = []
    for fname in names:
        stem = osp.splitext(fname)[0]
        per_scale = {s: (osp.join(dst, f'GTmod{s}', stem + '.png'),
                         osp.join(dst, 'LR_bicubic', f'X{s}', f'{stem}x{s}.png'),
                         _shipped_lr(src, stem, s)) for s in scales}
        items.append({'hr': osp.join(hr_dir, fname), 'hr_dst': osp.join(dst, 'HR', stem + '.png'),
                      'scales': per_scale, 'stem': stem})
    errors, summary = [], {}
    for item, result in zip(items, parallel_map(_srbench_worker, items, workers, name)):
        if isinstance(result, JobError):
            errors.append(result.message)
            continue
        for scale, st in result.items():
            agg = summary.setdefault(scale, {'images': 0, 'max': 0, 'exact': 0, 'within1': 0, 'n': 0,
                                             'inner_max': 0, 'shape_mismatch': []})
            if 'shape' in st:
                agg['shape_mismatch'].append(item['stem'])
                continue
            agg['images'] += 1
            for k in ('exact', 'within1', 'n'):
                agg[k] += st[k]
            agg['max'] = max(agg['max'], st['max'])
            agg['inner_max'] = max(agg['inner_max'], st['inner_max'])
    if errors:
        raise PrepError(f'{len(errors)} source file(s) could not be used:\n  ' + '\n  '.join(errors[:50]))
    for scale, agg in sorted(summary.items()):
        msg = (f"{name} x{scale}: ours vs the shipped LR_bicubic/X{scale} on {agg['images']} images: "
               f"{100 * agg['exact'] / max(agg['n'], 1):.3f}% of values identical, "
               f"{100 * agg['within1'] / max(agg['n'], 1):.3f}% within 1 grey level, max diff {agg['max']}, "
               f"max diff away from a 2-pixel border {agg['inner_max']}")
        if agg['shape_mismatch']:
            msg += f"; different sizes for {agg['shape_mismatch'][:5]}"
        note(msg + '.')
    groups = []
    for s in scales:
        groups.append({'kind': 'folders', 'lq': f'LR_bicubic/X{s}', 'gt': 'HR', 'filename_tmpl': f'{{}}x{s}',
                       'scale': s, 'count': len(names)})
        groups.append({'kind': 'folders', 'lq': f'LR_bicubic/X{s}', 'gt': f'GTmod{s}', 'filename_tmpl': f'{{}}x{s}',
                       'scale': s, 'count': len(names)})
    update_manifest(dst, name, groups)
    return summary


def prep_srbench(src, dst, scales=(2, 3, 4), workers=1, sets=None):
    """Prepare every SR test set found under a benchmark root (``<src>/<Set>/...`` -> ``<dst>/<Set>/...``)."""
    found = {}
    entries = os.listdir(src) if osp.isdir(src) else []
    for name, (_, aliases) in SR_SETS.items():
        if sets and name not in sets:
            continue
        for entry in entries:
            if entry.lower() in {a.lower() for a in aliases} and osp.isdir(osp.join(src, entry)):
                found[name] = osp.join(src, entry)
                break
    if not found:
        raise PrepError(f"srbench: expected one or more of {', '.join(SR_SETS)} (B100 may be named BSD100) as "
                        f"folders in '{src}' (as EDSR's benchmark.tar unpacks: benchmark/Set5/HR/...); "
                        f'but {describe_dir(src)}.')
    missing = [n for n in (sets or SR_SETS) if n not in found]
    if missing:
        note(f"srbench: not found in '{src}': {', '.join(missing)} (Manga109 is not in EDSR's benchmark.tar).")
    return {name: prep_srbench_set(path, osp.join(dst, name), name, scales, workers) for name, path in found.items()}
