"""The ``verify`` subcommand: re-open prepared data and check it the way BasicSR will read it.

``python -m datasets_prep verify PATH [PATH ...] [--count N] [--no-decode]``

* ``X.lmdb`` paths: each LMDB is checked (every ``meta_info.txt`` key is in ``data.mdb`` and decodes
  to the recorded shape, nothing unlisted, no duplicates); when several are given they are one
  paired set (``lq`` and ``gt``, or GT + every LR scale): identical keys and a consistent size ratio.
* a dataset folder (``datasets/GoPro``): every pair recorded in its ``datasets_prep.json`` by the
  command that built it, LMDB pairs as above and folder pairs (same names through
  ``filename_tmpl``, every image decodes, ``lq = floor(gt / scale)``), with the recorded counts;
  LMDBs found under it but not recorded are checked on their own.

Exit status 0 when everything is consistent, 1 otherwise (each problem is printed).
"""
import json
import os
import os.path as osp

import cv2

from .common import MANIFEST, list_images, unpaired_message
from .lmdb_writer import PARTIAL_SUFFIX, verify_lmdb_group


def verify_folders(root, group, decode=True):
    """Check one folder pair recorded in a manifest; returns problems."""
    lq_dir, gt_dir = osp.join(root, group['lq']), osp.join(root, group['gt'])
    problems = [f"'{d}' does not exist." for d in (lq_dir, gt_dir) if not osp.isdir(d)]
    if problems:
        return problems
    tmpl, scale = group.get('filename_tmpl', '{}'), group.get('scale', 1)
    gts, lqs = list_images(gt_dir), set(list_images(lq_dir))
    if group.get('count') is not None and len(gts) != group['count']:
        problems.append(f"'{gt_dir}': {len(gts)} images, expected {group['count']}.")
    partner = {name: tmpl.format(osp.splitext(name)[0]) + osp.splitext(name)[1] for name in gts}
    no_lq = [name for name in gts if partner[name] not in lqs]
    no_gt = sorted(lqs - set(partner.values()))
    if no_lq or no_gt:
        problems.append(unpaired_message(lq_dir, len(lqs), no_gt, gt_dir, len(gts), no_lq))
    for name in gts:
        lq_name = partner[name]
        if lq_name not in lqs or not decode:
            continue
        gt = cv2.imread(osp.join(gt_dir, name), cv2.IMREAD_COLOR)
        lq = cv2.imread(osp.join(lq_dir, lq_name), cv2.IMREAD_COLOR)
        if gt is None or lq is None:
            bad = osp.join(gt_dir, name) if gt is None else osp.join(lq_dir, lq_name)
            problems.append(f"'{bad}' does not decode.")
            continue
        want = (gt.shape[0] // scale, gt.shape[1] // scale)
        if lq.shape[:2] != want:
            problems.append(f"'{lq_dir}/{lq_name}' is {lq.shape[1]}x{lq.shape[0]} (WxH) but its GT "
                            f"'{gt_dir}/{name}' is {gt.shape[1]}x{gt.shape[0]}; expected {want[1]}x{want[0]} "
                            f'at scale {scale}.')
    return problems


def _find_lmdbs(root):
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        for d in list(dirnames):
            if d.endswith('.lmdb'):
                found.append(osp.join(dirpath, d))
                dirnames.remove(d)
            elif d.endswith('.lmdb' + PARTIAL_SUFFIX):
                dirnames.remove(d)
    return sorted(found)


def verify_paths(paths, count=None, decode=True):
    """Verify LMDB paths and/or dataset folders; returns (checked descriptions, problems)."""
    checked, problems = [], []
    lmdbs = [p.rstrip('/') for p in paths if p.rstrip('/').endswith('.lmdb')]
    folders = [p for p in paths if not p.rstrip('/').endswith('.lmdb')]
    if lmdbs:
        problems += verify_lmdb_group(lmdbs, count, decode)
        checked.append(' + '.join(lmdbs))
    for root in folders:
        if not osp.isdir(root):
            problems.append(f"'{root}' does not exist.")
            continue
        manifest = osp.join(root, MANIFEST)
        covered = set()
        before = len(checked)
        if osp.isfile(manifest):
            with open(manifest) as f:
                recorded = json.load(f)
            groups, dataset = recorded['groups'], recorded.get('dataset')
            for group in groups:
                if group['kind'] == 'lmdb':
                    group_paths = [osp.join(root, p) for p in group['paths']]
                    covered.update(osp.abspath(p) for p in group_paths)
                    problems += verify_lmdb_group(group_paths, count if count is not None else group.get('count'),
                                                  decode, dataset)
                    checked.append(' + '.join(group['paths']))
                else:
                    problems += verify_folders(root, group, decode)
                    checked.append(f"{group['lq']} / {group['gt']} (folders)")
        for path in _find_lmdbs(root):
            if osp.abspath(path) not in covered:
                problems += verify_lmdb_group([path], count, decode)
                checked.append(osp.relpath(path, root))
        if len(checked) == before:
            problems.append(f"'{root}': nothing to verify (no {MANIFEST} and no .lmdb folders).")
    # one HR folder is the GT of every scale's pair: a bad HR image is one problem, not one per scale
    return checked, list(dict.fromkeys(problems))


def run_verify(paths, count=None, no_decode=False):
    """The ``verify`` subcommand: print what was checked and every problem; returns the exit status."""
    checked, problems = verify_paths(paths, count, not no_decode)
    for item in checked:
        print(f'checked: {item}')
    for problem in problems:
        print(f'PROBLEM: {problem}')
    print(f'verify: {"FAILED, " + str(len(problems)) + " problem(s)" if problems else "OK"}')
    return 1 if problems else 0
