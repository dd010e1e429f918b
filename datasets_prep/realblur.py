"""RealBlur-J and RealBlur-R, split by the official train/test list files.

Subcommands ``realblur_j`` and ``realblur_r`` (usage lines and defaults: ``datasets_prep.commands``).

Source (as ``RealBlur.tar.gz`` unpacks; paths as in its list files):
``RealBlur-J_ECC_IMCORR_centroid_itensity_ref/sceneNNN/{gt/gt_K.png, blur/blur_K.png}``
(``itensity`` is the archive's spelling; R: ``RealBlur-R_BM3D_ECC_IMCORR_...``) and the list
files ``RealBlur_J_train_list.txt`` / ``RealBlur_J_test_list.txt``. Each list line is ``<gt path>
<blur path>`` relative to the dataset root (GT first; a trailing space; the last line has no
newline). Whether the lists sit at the archive root is not verified, so we look in
``--lists``, the root and ``datalist/`` (where SRN-Deblur keeps copies).

Output (names ``scene183_blur_7.png``, the form RealBlur's evaluation script parses)::

    train/input.lmdb, train/target.lmdb   whole images (sizes vary, about 680x770)
    test/input/, test/target/, test/input.lmdb, test/target.lmdb
"""
import os.path as osp

from .common import PrepError, describe_dir, expected_count, note, prep_pairs, update_manifest

FOLDERS = {'J': 'RealBlur-J_ECC_IMCORR_centroid_itensity_ref', 'R': 'RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref'}
OFFICIAL_COUNTS = {'train': 3758, 'test': 980}


def _root(src, variant):
    for root in (src, osp.join(src, 'RealBlur'), osp.join(src, 'dataset')):
        if osp.isdir(osp.join(root, FOLDERS[variant])):
            return root
    raise PrepError(f"RealBlur-{variant}: expected the folder '{FOLDERS[variant]}/' (sceneNNN/gt/gt_K.png, "
                    f"sceneNNN/blur/blur_K.png) in '{src}', as RealBlur.tar.gz unpacks; but {describe_dir(src)}.")


def find_list(root, variant, split, lists_dir=None):
    name = f'RealBlur_{variant}_{split}_list.txt'
    places = ([lists_dir] if lists_dir else []) + [root, osp.join(root, 'datalist')]
    for place in places:
        if osp.isfile(osp.join(place, name)):
            return osp.join(place, name)
    raise PrepError(f"RealBlur-{variant}: the list file '{name}' was not found in {', '.join(places)}. It ships with "
                    'RealBlur (copies: rimchang/SRN-Deblur datalist/); pass its folder with --lists.')


def parse_list(list_path, root, variant):
    """Parse ``<gt> <blur>`` lines into ``(key, blur_path, gt_path)``; keys ``sceneNNN_blur_K``."""
    pairs = []
    with open(list_path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise PrepError(f"{list_path}:{lineno}: expected '<gt path> <blur path>', got {line.strip()!r}.")
            gt_rel, blur_rel = parts
            gt_parts, blur_parts = gt_rel.split('/'), blur_rel.split('/')
            if '/blur/' in f'/{gt_rel}' and '/gt/' in f'/{blur_rel}':
                raise PrepError(f'{list_path}:{lineno}: the ground truth must come first (columns look swapped): '
                                f'{line.strip()!r}.')
            if len(blur_parts) < 3 or blur_parts[-2] != 'blur' or gt_parts[-2] != 'gt':
                raise PrepError(f"{list_path}:{lineno}: expected '<folder>/sceneNNN/gt/gt_K.png "
                                f"<folder>/sceneNNN/blur/blur_K.png', got {line.strip()!r}.")
            if blur_parts[0] != FOLDERS[variant]:
                raise PrepError(f"{list_path}:{lineno}: the path starts with '{blur_parts[0]}', expected "
                                f"'{FOLDERS[variant]}' for RealBlur-{variant}.")
            key = f'{blur_parts[-3]}_{osp.splitext(blur_parts[-1])[0]}'
            pairs.append((key, osp.join(root, blur_rel), osp.join(root, gt_rel)))
    if not pairs:
        raise PrepError(f'{list_path}: the list is empty.')
    missing = [p for _, b, g in pairs for p in (b, g) if not osp.isfile(p)]
    if missing:
        raise PrepError(f'RealBlur-{variant}: {len(missing)} file(s) named in {list_path} do not exist, e.g. '
                        + ', '.join(missing[:5]) + '.')
    return pairs


def prep_realblur(src, dst, variant, splits=('train', 'test'), lists_dir=None, workers=1):
    """Build RealBlur-J or -R (``variant`` 'J' or 'R'; see the module docstring)."""
    variant = variant.upper()
    if variant not in FOLDERS:
        raise PrepError(f"RealBlur variant must be 'J' or 'R', got '{variant}'.")
    root = _root(src, variant)
    groups = []
    for split in splits:
        list_path = find_list(root, variant, split, lists_dir)
        pairs = parse_list(list_path, root, variant)
        note(f'RealBlur-{variant} {split}: {len(pairs)} pairs from {list_path}.')
        expected_count(f'RealBlur-{variant} {split} pairs', len(pairs), OFFICIAL_COUNTS[split])
        lmdbs = {'lq': osp.join(dst, split, 'input.lmdb'), 'gt': osp.join(dst, split, 'target.lmdb')}
        folders = None
        if split == 'test':
            folders = {'lq': osp.join(dst, split, 'input'), 'gt': osp.join(dst, split, 'target')}
        prep_pairs(pairs, lmdbs=lmdbs, folders=folders, workers=workers, desc=f'RealBlur-{variant} {split}')
        groups.append({'kind': 'lmdb', 'paths': [f'{split}/input.lmdb', f'{split}/target.lmdb'], 'count': len(pairs)})
        if folders:
            groups.append({'kind': 'folders', 'lq': f'{split}/input', 'gt': f'{split}/target', 'filename_tmpl': '{}',
                           'scale': 1, 'count': len(pairs)})
    update_manifest(dst, f'RealBlur_{variant}', groups)
