"""REDS deblurring (NTIRE 2021 blur + JPEG): training LMDBs and REDS-val-300, as HINet/NAFNet use them.

Subcommand ``reds`` (its usage line and defaults: ``datasets_prep.commands``).

Source: ``train/train_blur_jpeg/000/00000000.jpg`` + ``train/train_sharp/000/00000000.png`` and
``val/val_blur_jpeg/...`` + ``val/val_sharp/...`` (each REDS zip holds its split folder; the
folders directly under ``--src`` are accepted too). Clip folders are 3 digits, frames 8 digits; a blurry
frame pairs with the sharp frame of the same clip and index (only the extension differs).

Output (HINet/NAFNet's ``scripts/data_preparation/reds.py`` names)::

    train/train_sharp.lmdb, train/train_blur_jpeg.lmdb   whole 1280x720 frames, key 000_00000000
    val/sharp_300/, val/blur_300/                          REDS-val-300: frames whose index ends in 9
    val/sharp_300.lmdb, val/blur_300.lmdb                  (00000009, 00000019, ...), 10 per clip x 30 clips

The blurry JPEG frames are stored as PNG of their decoded pixels (lossless from that point): the
LMDB values are PNG in BasicSR's format anyway, and BasicSR's folder pairing takes the GT's
extension for the input file name, so ``blur_300/`` must hold ``.png`` files like ``sharp_300/``.
"""
import os
import os.path as osp
import re

from .common import PrepError, describe_dir, expected_count, list_images, note, prep_pairs, update_manifest

OFFICIAL_COUNTS = {'train': 24000, 'val': 300}
_CLIP = re.compile(r'^\d{3}$')


def find_folder(src, split, name):
    """``<src>/<split>/<name>`` or ``<src>/<name>``, holding 3-digit clip folders."""
    tried = []
    for base in (osp.join(src, split, name), osp.join(src, name), osp.join(src, split, name, split)):
        tried.append(base)
        if osp.isdir(base) and any(_CLIP.match(d) and osp.isdir(osp.join(base, d)) for d in os.listdir(base)):
            return base
    raise PrepError(f"REDS: expected clip folders 000/, 001/, ... with frames 00000000.png ... in "
                    f"'{tried[0]}' (as {name}.zip unpacks; '{tried[1]}' is accepted too), but {describe_dir(tried[0])}"
                    f"{'' if tried[0] == tried[1] else '; ' + describe_dir(tried[1])}; {describe_dir(src)}. "
                    'Use --splits to prepare only the splits you have.')


def clip_pairs(blur_dir, sharp_dir, frame_filter=None):
    """``(clip_frame, blur_path, sharp_path)`` for every sharp frame (optionally filtered by frame stem)."""
    pairs, missing = [], []
    clips = sorted(d for d in os.listdir(sharp_dir) if _CLIP.match(d) and osp.isdir(osp.join(sharp_dir, d)))
    for clip in clips:
        blur_clip = osp.join(blur_dir, clip)
        if not osp.isdir(blur_clip):
            missing.append(f'{blur_clip}/ (the whole clip)')
            continue
        blur_by_stem = {osp.splitext(n)[0]: n for n in list_images(blur_clip)}
        for name in list_images(osp.join(sharp_dir, clip)):
            stem = osp.splitext(name)[0]
            if frame_filter and not frame_filter(stem):
                continue
            if stem not in blur_by_stem:
                missing.append(osp.join(blur_clip, stem + '.jpg'))
                continue
            pairs.append((f'{clip}_{stem}', osp.join(blur_clip, blur_by_stem[stem]), osp.join(sharp_dir, clip, name)))
    if missing:
        raise PrepError(f'REDS: {len(missing)} blurry frame(s) missing for sharp frames in {sharp_dir}, e.g. '
                        + ', '.join(missing[:5]) + '.')
    if not pairs:
        raise PrepError(f"REDS: no frames found in '{sharp_dir}'.")
    return pairs


def is_val300_frame(stem):
    """HINet/NAFNet's ``make_val_300`` copies ``*9.*``: frame indices ending in 9."""
    return stem.endswith('9')


def prep_reds(src, dst, splits=('train', 'val'), train_blur='train_blur_jpeg', val_blur='val_blur_jpeg', workers=1):
    """Build REDS training LMDBs and REDS-val-300 (see the module docstring)."""
    groups = []
    if 'train' in splits:
        blur_dir = find_folder(src, 'train', train_blur)
        sharp_dir = find_folder(src, 'train', 'train_sharp')
        pairs = clip_pairs(blur_dir, sharp_dir)
        note(f'REDS train: {len(pairs)} pairs ({train_blur} + train_sharp).')
        expected_count('REDS train pairs', len(pairs), OFFICIAL_COUNTS['train'])
        lmdbs = {'lq': osp.join(dst, 'train', f'{train_blur}.lmdb'), 'gt': osp.join(dst, 'train', 'train_sharp.lmdb')}
        prep_pairs(pairs, lmdbs=lmdbs, workers=workers, desc='REDS train')
        groups.append({'kind': 'lmdb', 'paths': [f'train/{train_blur}.lmdb', 'train/train_sharp.lmdb'],
                       'count': len(pairs)})
    if 'val' in splits:
        blur_dir = find_folder(src, 'val', val_blur)
        sharp_dir = find_folder(src, 'val', 'val_sharp')
        pairs = clip_pairs(blur_dir, sharp_dir, is_val300_frame)
        note(f'REDS val-300: {len(pairs)} pairs (frames ending in 9 of {val_blur} + val_sharp).')
        expected_count('REDS-val-300 pairs', len(pairs), OFFICIAL_COUNTS['val'])
        lmdbs = {'lq': osp.join(dst, 'val', 'blur_300.lmdb'), 'gt': osp.join(dst, 'val', 'sharp_300.lmdb')}
        folders = {'lq': osp.join(dst, 'val', 'blur_300'), 'gt': osp.join(dst, 'val', 'sharp_300')}
        prep_pairs(pairs, lmdbs=lmdbs, folders=folders, workers=workers, desc='REDS val-300')
        groups += [{'kind': 'lmdb', 'paths': ['val/blur_300.lmdb', 'val/sharp_300.lmdb'], 'count': len(pairs)},
                   {'kind': 'folders', 'lq': 'val/blur_300', 'gt': 'val/sharp_300', 'filename_tmpl': '{}', 'scale': 1,
                    'count': len(pairs)}]
    update_manifest(dst, 'REDS', groups)
