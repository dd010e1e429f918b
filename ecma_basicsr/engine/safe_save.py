"""Atomic checkpoint writing: a crash mid-save never leaves a half-written checkpoint behind.

``torch.save(obj, 'net_g_350000.pth')`` writes in place, so a process killed (SIGKILL, node
failure, out of quota) while writing leaves a truncated file under the final name, and BasicSR's
``--auto_resume`` then picks exactly that file. :func:`atomic_save` writes to a hidden temporary
file in the same folder, flushes and fsyncs it, and only then renames it over the final name
(``os.replace`` is atomic on POSIX file systems). Readers see either the old file or the complete
new one. A temporary file orphaned by a kill is recognised by :func:`is_temp_name` and removed by
:func:`remove_stale_temps` when training resumes.
"""
import os
import os.path as osp
import time

import torch

TEMP_PREFIX = '.'
TEMP_MARK = '.tmp-'


def temp_path_for(path):
    """Hidden temporary name beside ``path``: ``dir/.<name>.tmp-<pid>``."""
    folder, name = osp.split(path)
    return osp.join(folder, f'{TEMP_PREFIX}{name}{TEMP_MARK}{os.getpid()}')


def is_temp_name(name):
    """True for a file name made by :func:`temp_path_for`."""
    return name.startswith(TEMP_PREFIX) and TEMP_MARK in name


def _fsync_dir(folder):
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:
        return  # some file systems do not allow opening a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj, path, retries=3, retry_wait=1.0, logger=None):
    """``torch.save(obj, path)`` through a temporary file and an atomic rename.

    Args:
        obj: What to save (a state dict, a training state ...).
        path (str): Final file name.
        retries (int): Attempts before giving up (network file systems fail transiently).
        retry_wait (float): Seconds between attempts.
        logger (logging.Logger | None): Where to warn about a failed attempt.

    Raises:
        OSError: every attempt failed. The previous file under ``path`` (if any) is untouched.
    """
    tmp = temp_path_for(path)
    last_err = None
    for attempt in range(1, retries + 1):
        try:
            with open(tmp, 'wb') as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(osp.dirname(path))
            return
        except OSError as err:
            last_err = err
            if osp.exists(tmp):
                os.remove(tmp)
            if logger is not None:
                logger.warning(f'Writing {path} failed (attempt {attempt}/{retries}): {err}')
            if attempt < retries:
                time.sleep(retry_wait)
    raise OSError(f"Cannot write checkpoint '{path}' after {retries} attempts: {last_err}. The previous "
                  f'checkpoints are intact; free disk space / fix the folder, then restart with --auto_resume.')


def remove_stale_temps(folder):
    """Delete temporary files a killed writer left in ``folder``; returns the removed paths."""
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        if is_temp_name(name):
            path = osp.join(folder, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed
