"""SIDD sRGB denoising: SIDD-Medium training crops and the validation ``.mat`` blocks, as NAFNet/HINet use them.

Subcommand ``sidd`` (its usage line and defaults: ``datasets_prep.commands``).

Source (``SIDD_Medium_Srgb.zip`` and the validation ``.mat`` files from the SIDD site):

* training: ``SIDD_Medium_Srgb/Data/<scene>/NNNN_{NOISY,GT}_SRGB_01{0,1}.PNG`` (the ``Data`` folder
  itself, ``--src/Data`` and Restormer's ``train/`` repack are accepted; ``.PNG`` or ``.png``);
* validation: ``ValidationNoisyBlocksSrgb.mat`` and ``ValidationGtBlocksSrgb.mat`` in ``--src`` or
  ``--val-dir``: uint8 arrays (40, 32, 256, 256, 3) in RGB order under the keys of the same names.

Output (NAFNet's ``scripts/data_preparation/sidd.py`` and HINet's validation LMDB names)::

    train/input_crops.lmdb, train/gt_crops.lmdb   512x512 crops, step 384, key 0001_SRGB_010_s001
    val/input_crops.lmdb, val/gt_crops.lmdb       the 1280 blocks, key ValidationBlocksSrgb_{n*32+b}
"""
import os
import os.path as osp
import re

from .common import PrepError, describe_dir, expected_count, note, prep_pairs, update_manifest
from .lmdb_writer import LmdbWriter, is_complete

OFFICIAL_TRAIN = 320
_NOISY = re.compile(r'^(?P<id>\d{4})_NOISY_SRGB_(?P<idx>\d{3})(?P<ext>\.png)$', re.IGNORECASE)
VAL_FILES = {'lq': ('ValidationNoisyBlocksSrgb.mat', 'ValidationNoisyBlocksSrgb'),
             'gt': ('ValidationGtBlocksSrgb.mat', 'ValidationGtBlocksSrgb')}


def _has_scenes(folder):
    if not osp.isdir(folder):
        return False
    for d in os.listdir(folder):
        sub = osp.join(folder, d)
        if osp.isdir(sub) and any(_NOISY.match(n) for n in os.listdir(sub)):
            return True
    return False


def find_data(src):
    for folder in (osp.join(src, 'SIDD_Medium_Srgb', 'Data'), osp.join(src, 'Data'), src, osp.join(src, 'train'),
                   osp.join(src, 'SIDD')):
        if _has_scenes(folder):
            return folder
    raise PrepError(f"SIDD: expected scene folders like 'Data/0001_001_S6_00100_00060_3200_L/' holding "
                    f"'0001_NOISY_SRGB_010.PNG' and '0001_GT_SRGB_010.PNG' in '{src}' (SIDD_Medium_Srgb.zip unpacks to "
                    f"'SIDD_Medium_Srgb/Data/'); but {describe_dir(src)}. Use --splits val to prepare only the "
                    'validation blocks.')


def train_pairs(data_dir):
    """``(key, noisy, gt)`` with NAFNet's name: ``_NOISY``/``_GT`` removed, e.g. ``0001_SRGB_010``."""
    pairs, missing = [], []
    for scene in sorted(os.listdir(data_dir)):
        scene_dir = osp.join(data_dir, scene)
        if not osp.isdir(scene_dir):
            continue
        names = os.listdir(scene_dir)
        for name in sorted(names):
            m = _NOISY.match(name)
            if not m:
                continue
            gt_name = f"{m.group('id')}_GT_SRGB_{m.group('idx')}{m.group('ext')}"
            if gt_name not in names:
                missing.append(osp.join(scene_dir, gt_name))
                continue
            pairs.append((f"{m.group('id')}_SRGB_{m.group('idx')}", osp.join(scene_dir, name),
                          osp.join(scene_dir, gt_name)))
    if missing:
        raise PrepError(f'SIDD: {len(missing)} noisy image(s) have no ground truth, e.g. '
                        + ', '.join(missing[:5]) + '.')
    return pairs


def load_blocks(path, key):
    """Load one validation ``.mat`` array, checked to be uint8 (N, B, H, W, 3)."""
    import numpy as np
    from scipy.io import loadmat
    try:
        mat = loadmat(path)
    except NotImplementedError:
        raise PrepError(f'{path}: a MATLAB v7.3 (HDF5) file; the SIDD validation files are v7 and load with '
                        'scipy.io.loadmat. Re-download it.') from None
    except (ValueError, OSError) as err:
        raise PrepError(f'{path}: not a readable .mat file ({err}); re-download it.') from None
    if key not in mat:
        found = [k for k in mat if not k.startswith('__')]
        raise PrepError(f"{path}: no variable '{key}'; found {found}.")
    arr = mat[key]
    if arr.ndim != 5 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise PrepError(f"{path}: '{key}' is {arr.dtype} {arr.shape}; expected uint8 (images, blocks, H, W, 3), "
                        'e.g. (40, 32, 256, 256, 3).')
    return arr


def prep_sidd(src, dst, splits=('train', 'val'), val_dir=None, crop=512, step=384, workers=1):
    """Build SIDD's training crops and validation LMDBs (see the module docstring)."""
    groups = []
    if 'train' in splits:
        data_dir = find_data(src)
        pairs = train_pairs(data_dir)
        note(f'SIDD train: {len(pairs)} pairs in {data_dir}.')
        expected_count('SIDD-Medium sRGB pairs', len(pairs), OFFICIAL_TRAIN)
        lmdbs = {'lq': osp.join(dst, 'train', 'input_crops.lmdb'), 'gt': osp.join(dst, 'train', 'gt_crops.lmdb')}
        prep_pairs(pairs, lmdbs=lmdbs, crop=(crop, step, 0), workers=workers, desc='SIDD train crops')
        groups.append({'kind': 'lmdb', 'paths': ['train/input_crops.lmdb', 'train/gt_crops.lmdb'], 'count': None})
    if 'val' in splits:
        places = ([val_dir] if val_dir else []) + [src]
        paths = {}
        for label, (fname, _) in VAL_FILES.items():
            paths[label] = next((osp.join(p, fname) for p in places if osp.isfile(osp.join(p, fname))), None)
            if paths[label] is None:
                raise PrepError(f"SIDD: '{fname}' not found in {', '.join(places)}; download it from the SIDD site "
                                'and pass its folder with --val-dir, or use --splits train.')
        outs = {'lq': osp.join(dst, 'val', 'input_crops.lmdb'), 'gt': osp.join(dst, 'val', 'gt_crops.lmdb')}
        todo = {label: path for label, path in outs.items() if not is_complete(path)}
        shapes = {}
        for label in ('lq', 'gt'):
            arr = load_blocks(paths[label], VAL_FILES[label][1])
            shapes[label] = arr.shape
            if label in todo:
                _write_blocks(arr, todo[label])
        if shapes.get('lq') != shapes.get('gt'):
            raise PrepError(f"SIDD: the noisy blocks {shapes['lq']} and the GT blocks {shapes['gt']} differ in shape.")
        n = shapes['lq'][0] * shapes['lq'][1]
        note(f"SIDD val: {n} blocks of {shapes['lq'][2]}x{shapes['lq'][3]} "
             f"({'written' if todo else 'already complete'}).")
        groups.append({'kind': 'lmdb', 'paths': ['val/input_crops.lmdb', 'val/gt_crops.lmdb'], 'count': n})
    update_manifest(dst, 'SIDD', groups)


def _write_blocks(arr, path):
    """Blocks (N, B, H, W, 3) RGB -> LMDB of BGR PNGs, key ``ValidationBlocksSrgb_{n*B+b}``."""
    writer = LmdbWriter(path)
    try:
        n_img, n_blk = arr.shape[:2]
        for n in range(n_img):
            for b in range(n_blk):
                writer.put_image(f'ValidationBlocksSrgb_{n * n_blk + b}', arr[n, b, :, :, ::-1])
        writer.commit()
    except BaseException:
        writer.abort()
        raise
