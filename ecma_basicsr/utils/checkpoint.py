"""Checkpoint discovery and safe loading for resume.

BasicSR writes ``experiments/<name>/training_states/<iter>.state`` and picks the largest
``<iter>`` on ``--auto_resume``. A state cut short by a crash would then kill the resume, so
we try the newest first and fall back to older ones, logging which file was skipped and why.
Loading always uses ``weights_only=True``: the compat module allow-lists the few plain
containers BasicSR stores, so no arbitrary pickle is executed.
"""
import os
import os.path as osp

import torch


def list_states(state_dir):
    """Return ``[(iter, path), ...]`` for ``*.state`` files in ``state_dir``, newest first."""
    if not osp.isdir(state_dir):
        return []
    found = []
    for name in os.listdir(state_dir):
        stem, ext = osp.splitext(name)
        if ext == '.state' and stem.isdigit():
            found.append((int(stem), osp.join(state_dir, name)))
    return sorted(found, reverse=True)


def safe_load(path, map_location='cpu'):
    """``torch.load`` with the weights-only unpickler, whatever torch's default is."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_resume_state(opt, map_location='cpu'):
    """BasicSR's ``load_resume_state`` made device-aware and tolerant of truncated files."""
    from basicsr.utils import get_root_logger
    from basicsr.utils.misc import check_resume

    if opt['auto_resume']:
        candidates = list_states(osp.join(opt['path'].get('experiments_root') or
                                          osp.join('experiments', opt['name']), 'training_states'))
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
        if not osp.isfile(path):
            raise FileNotFoundError(f"path:resume_state points to '{path}', which does not exist.")
        candidates = [(None, path)]
    else:
        return None

    for _, path in candidates:
        try:
            state = safe_load(path, map_location)
        except Exception as err:  # truncated or corrupt file: try the previous one
            if not opt['auto_resume']:
                raise RuntimeError(f"Cannot load resume state '{path}': {err}") from err
            get_root_logger().warning(f'Skipping unreadable training state {path}: {err}')
            print(f'Skipping unreadable training state {path}: {err}', flush=True)
            continue
        opt['path']['resume_state'] = path
        check_resume(opt, state['iter'])
        return state
    return None
