"""HIDE deblurring test set (2025 pairs), with names made safe for BasicSR.

Subcommand ``hide`` (its usage line and defaults: ``datasets_prep.commands``).

Source (as ``HIDE_dataset.zip`` unpacks): ``[HIDE_dataset/]GT/`` (sharp) and ``test/test-close-ups/``,
``test/test-long-shot/`` (blurry), same file names; or Restormer's repack ``test/HIDE/{input,target}``.
A blurry ``X.MP4.png`` is matched with ``GT/X.MP4.png`` or ``GT/X.png`` (and the reverse), because
which spelling the archive uses is not verified.

Names like ``1fromGOPR1096.MP4.png`` contain a dot, and BasicSR rebuilds LMDB keys with
``line.split('.')[0]``, so ``1fromGOPR1096.MP4`` would become ``1fromGOPR1096``. We therefore rename
every output: dots in the stem become underscores (``1fromGOPR1096_MP4.png``), in the folders and
the LMDBs alike, and ``test/names.tsv`` maps each new name back to the source files. Output::

    test/input/, test/target/, test/input.lmdb, test/target.lmdb, test/names.tsv
"""
import os
import os.path as osp

from .common import (
    PrepError,
    _atomic_write_bytes,
    describe_dir,
    expected_count,
    list_images,
    note,
    prep_pairs,
    sanitize_key,
    update_manifest,
)
from .gopro import flat_pairs

OFFICIAL_TEST = 2025
KNOWN_SUBSETS = ('test-close-ups', 'test-long-shot')


def _root(src):
    for root in (src, osp.join(src, 'HIDE_dataset')):
        if osp.isdir(osp.join(root, 'GT')) and osp.isdir(osp.join(root, 'test')):
            return 'official', root
    for base in (osp.join(src, 'test', 'HIDE'), osp.join(src, 'HIDE'), src):
        if osp.isdir(osp.join(base, 'input')) and osp.isdir(osp.join(base, 'target')):
            return 'flat', base
    raise PrepError(f"HIDE: expected 'GT/' and 'test/{{test-close-ups,test-long-shot}}/' in '{src}' (or in "
                    f"'{src}/HIDE_dataset'), as HIDE_dataset.zip unpacks, or Restormer's 'test/HIDE/{{input,target}}'; "
                    f'but {describe_dir(src)}.')


def gt_candidates(name):
    """GT file names to try for a blurry file name: as is, then with/without '.MP4'."""
    stem, ext = osp.splitext(name)
    other = stem[:-4] + ext if stem.endswith('.MP4') else stem + '.MP4' + ext
    return [name, other]


def official_pairs(root):
    """``(key, blurry, sharp, blurry_rel)`` for every image under ``test/<subset>/``."""
    test_dir, gt_dir = osp.join(root, 'test'), osp.join(root, 'GT')
    subsets = sorted(d for d in os.listdir(test_dir) if osp.isdir(osp.join(test_dir, d)))
    if not subsets:
        raise PrepError(f"HIDE: no subfolders in '{test_dir}'; expected {', '.join(KNOWN_SUBSETS)}. "
                        f'{describe_dir(test_dir)}.')
    unknown = [s for s in subsets if s not in KNOWN_SUBSETS]
    if unknown:
        note(f'HIDE: unexpected test subfolder(s) {unknown} (known: {KNOWN_SUBSETS}); using them too.')
    pairs, missing, seen = [], [], {}
    for sub in subsets:
        for name in list_images(osp.join(test_dir, sub)):
            cands = gt_candidates(name)
            gt = next((osp.join(gt_dir, c) for c in cands if osp.isfile(osp.join(gt_dir, c))), None)
            if gt is None:
                missing.append(f"test/{sub}/{name}: looked for {' and '.join('GT/' + c for c in cands)}")
                continue
            key = sanitize_key(osp.splitext(name)[0])
            if key in seen:
                raise PrepError(f"HIDE: 'test/{sub}/{name}' and '{seen[key]}' both become '{key}.png'; "
                                'rename one of them.')
            seen[key] = f'test/{sub}/{name}'
            pairs.append((key, osp.join(test_dir, sub, name), gt, f'test/{sub}/{name}'))
    if missing:
        raise PrepError(f'HIDE: {len(missing)} blurry image(s) have no ground truth in {gt_dir} (names with and '
                        'without ".MP4" are both accepted):\n  ' + '\n  '.join(missing[:20]))
    return pairs


def prep_hide(src, dst, workers=1):
    """Build the HIDE test pairs (see the module docstring)."""
    layout, root = _root(src)
    if layout == 'official':
        pairs = official_pairs(root)
    else:
        pairs = [(sanitize_key(k), a, b, osp.relpath(a, root)) for k, a, b in flat_pairs(
            osp.join(root, 'input'), osp.join(root, 'target'), 'HIDE')]
    if not pairs:
        raise PrepError(f"HIDE: no images found under '{root}'.")
    renamed = sum(1 for key, a, _, _ in pairs if key != osp.splitext(osp.basename(a))[0])
    note(f'HIDE: {len(pairs)} pairs ({layout} layout); {renamed} names had dots and were renamed (see test/names.tsv).')
    expected_count('HIDE test pairs', len(pairs), OFFICIAL_TEST)
    lmdbs = {'lq': osp.join(dst, 'test', 'input.lmdb'), 'gt': osp.join(dst, 'test', 'target.lmdb')}
    folders = {'lq': osp.join(dst, 'test', 'input'), 'gt': osp.join(dst, 'test', 'target')}
    prep_pairs([p[:3] for p in pairs], lmdbs=lmdbs, folders=folders, workers=workers, desc='HIDE test')
    rows = ['name\tblurry_source\tsharp_source\n'] + [
        f'{key}.png\t{rel}\t{osp.relpath(gt, root)}\n' for key, _, gt, rel in pairs]
    _atomic_write_bytes(osp.join(dst, 'test', 'names.tsv'), ''.join(rows).encode())
    update_manifest(dst, 'HIDE', [
        {'kind': 'lmdb', 'paths': ['test/input.lmdb', 'test/target.lmdb'], 'count': len(pairs)},
        {'kind': 'folders', 'lq': 'test/input', 'gt': 'test/target', 'filename_tmpl': '{}', 'scale': 1,
         'count': len(pairs)}])
