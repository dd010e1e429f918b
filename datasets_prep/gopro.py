"""GoPro (GOPRO_Large) deblurring data in NAFNet/HINet's layout.

Subcommand ``gopro`` (its usage line and defaults: ``datasets_prep.commands``).

Two source layouts are detected automatically (the official tree as the GoPro authors' DeepDeblur
release and SRN-Deblur's data lists show it; the flattened one from MPRNet/Restormer's download script):

* official ``GOPRO_Large.zip``: ``[GOPRO_Large/]{train,test}/GOPRxxxx_xx_xx/{blur,blur_gamma,sharp}/NNNNNN.png``
  (whether the zip has the ``GOPRO_Large/`` top folder is not verified, so both are accepted);
  ``--blur blur`` (default; what the MPRNet/HINet/NAFNet benchmark uses) or ``--blur blur_gamma``;
* flattened repack (MPRNet/Restormer/HINet/NAFNet): ``train/{input,target}/GOPR0372_07_00-000047.png``
  and ``test/{input,target}`` (Restormer's test zip: ``test/GoPro/{input,target}``).

Output (names as in the flattened repack, so both sources give identical results)::

    train/blur_crops.lmdb, train/sharp_crops.lmdb   512x512 crops, step 256, key GOPR0372_07_00-000047_s001
    test/input/, test/target/                       full 1280x720 pairs, GOPR0384_11_00-000001.png
    test/input.lmdb, test/target.lmdb               the same pairs as LMDB (NAFNet's test option files)
"""
import os
import os.path as osp

from .common import PrepError, describe_dir, expected_count, list_images, note, prep_pairs, update_manifest

OFFICIAL_COUNTS = {'train': 2103, 'test': 1111}


def _is_sequence(path):
    return osp.isdir(osp.join(path, 'sharp'))


def find_split(src, split):
    """Locate one split; returns ``('official', split_dir)`` or ``('flat', input_dir, target_dir)``, or None."""
    for root in (src, osp.join(src, 'GOPRO_Large')):
        base = osp.join(root, split)
        for flat in (base, osp.join(base, 'GoPro')):
            if osp.isdir(osp.join(flat, 'input')) and osp.isdir(osp.join(flat, 'target')):
                return ('flat', osp.join(flat, 'input'), osp.join(flat, 'target'))
        if osp.isdir(base) and any(_is_sequence(osp.join(base, d)) for d in os.listdir(base)):
            return ('official', base)
    return None


def _layout_error(src, split):
    return PrepError(
        f"GoPro: could not find the '{split}' split in '{src}'. Expected either '{split}/GOPRxxxx_xx_xx/"
        "{blur,blur_gamma,sharp}/NNNNNN.png' (official GOPRO_Large.zip, with or without the 'GOPRO_Large/' top "
        f"folder) or '{split}/input/' + '{split}/target/' (the flattened repack; Restormer's test zip: "
        f"'test/GoPro/input'). Found: {describe_dir(src)}"
        + (f"; {describe_dir(osp.join(src, split))}" if osp.isdir(osp.join(src, split)) else '')
        + '. Use --splits to prepare only the splits you have.')


def official_pairs(split_dir, blur='blur'):
    """``(key, blur_path, sharp_path)`` for the official layout, key ``<sequence>-<frame>``."""
    pairs = []
    seqs = sorted(d for d in os.listdir(split_dir) if osp.isdir(osp.join(split_dir, d)))
    for seq in seqs:
        seq_dir = osp.join(split_dir, seq)
        if not _is_sequence(seq_dir):
            raise PrepError(f"GoPro: '{seq_dir}' has no 'sharp/' folder; every sequence folder needs "
                            f'blur/ (or blur_gamma/) and sharp/. {describe_dir(seq_dir)}.')
        blur_dir = osp.join(seq_dir, blur)
        if not osp.isdir(blur_dir):
            raise PrepError(f"GoPro: '{blur_dir}/' is missing (--blur {blur}); {describe_dir(seq_dir)}.")
        blurs, sharps = list_images(blur_dir), list_images(osp.join(seq_dir, 'sharp'))
        only_blur = sorted(set(blurs) - set(sharps))
        only_sharp = sorted(set(sharps) - set(blurs))
        if only_blur or only_sharp:
            raise PrepError(f"GoPro: in '{seq_dir}', {blur}/ and sharp/ hold different frames: only in {blur}/: "
                            f'{only_blur[:5]}, only in sharp/: {only_sharp[:5]}.')
        for name in blurs:
            pairs.append((f'{seq}-{osp.splitext(name)[0]}', osp.join(blur_dir, name), osp.join(seq_dir, 'sharp', name)))
    return pairs


def flat_pairs(input_dir, target_dir, dataset='GoPro'):
    """``(key, input_path, target_path)`` for folders paired by identical file names."""
    inputs, targets = list_images(input_dir), list_images(target_dir)
    only_in = sorted(set(inputs) - set(targets))
    only_tg = sorted(set(targets) - set(inputs))
    if only_in or only_tg:
        raise PrepError(f"{dataset}: '{input_dir}' and '{target_dir}' must hold the same file names; only in "
                        f'input: {only_in[:5]} ({len(only_in)}), only in target: {only_tg[:5]} ({len(only_tg)}).')
    if not inputs:
        raise PrepError(f"{dataset}: no images in '{input_dir}'.")
    return [(osp.splitext(n)[0], osp.join(input_dir, n), osp.join(target_dir, n)) for n in inputs]


def prep_gopro(src, dst, splits=('train', 'test'), blur='blur', crop=512, step=256, workers=1):
    """Build GoPro's training crop LMDBs and test pairs (see the module docstring)."""
    if blur not in ('blur', 'blur_gamma'):
        raise PrepError(f"--blur must be 'blur' or 'blur_gamma', got '{blur}'.")
    found = {}
    for split in splits:
        layout = find_split(src, split)
        if layout is None:
            raise _layout_error(src, split)
        found[split] = layout
    groups = []
    for split, layout in found.items():
        if layout[0] == 'official':
            pairs = official_pairs(layout[1], blur)
            note(f'GoPro {split}: official layout in {layout[1]} ({blur}/ as input), {len(pairs)} pairs.')
        else:
            pairs = flat_pairs(layout[1], layout[2])
            note(f'GoPro {split}: flattened layout {layout[1]} + {layout[2]}, {len(pairs)} pairs.')
        expected_count(f'GoPro {split} pairs', len(pairs), OFFICIAL_COUNTS[split])
        if split == 'train':
            lmdbs = {'lq': osp.join(dst, 'train', 'blur_crops.lmdb'), 'gt': osp.join(dst, 'train', 'sharp_crops.lmdb')}
            prep_pairs(pairs, lmdbs=lmdbs, crop=(crop, step, 0), workers=workers, desc='GoPro train crops')
            groups.append({'kind': 'lmdb', 'paths': ['train/blur_crops.lmdb', 'train/sharp_crops.lmdb'], 'count': None})
        else:
            lmdbs = {'lq': osp.join(dst, 'test', 'input.lmdb'), 'gt': osp.join(dst, 'test', 'target.lmdb')}
            folders = {'lq': osp.join(dst, 'test', 'input'), 'gt': osp.join(dst, 'test', 'target')}
            prep_pairs(pairs, lmdbs=lmdbs, folders=folders, workers=workers, desc='GoPro test')
            groups += [{'kind': 'lmdb', 'paths': ['test/input.lmdb', 'test/target.lmdb'], 'count': len(pairs)},
                       {'kind': 'folders', 'lq': 'test/input', 'gt': 'test/target', 'filename_tmpl': '{}',
                        'scale': 1, 'count': len(pairs)}]
    update_manifest(dst, 'GoPro', groups)
