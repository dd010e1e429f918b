"""A run that fails does not take the previous run's models away: archiving is visible and undone on failure.

BasicSR starts every run that is not resumed by renaming an existing ``experiments/<name>/`` (or,
for ``basicsr test``, ``results/<name>/``, and ``tb_logger/<name>/``) to ``<name>_archived_<time>``
(``basicsr.utils.misc.mkdir_and_rename``). When the new run then fails before it has written a
checkpoint, the trained model is no longer where ``basicsr test`` / ``restore`` look for it.

:func:`mkdir_and_rename` (installed by :mod:`.patches`) records each such move and says where the
previous run went, on stderr. :func:`undo_archiving` runs when the pipeline raises: when the new
folder holds no checkpoint (``models/*.pth`` or ``training_states/*.state``) and no test result
image, it is renamed to ``<name>_failed_<time>`` (its log is kept) and the archived folder is moved
back to ``<name>``.
"""
import glob
import os
import os.path as osp
import sys

_moves = []  # (original path, archived path) made during this run, in order


def reset():
    """Forget the moves recorded so far (a new pipeline run starts)."""
    _moves.clear()


def mkdir_and_rename(original):
    def archive(path):
        """``mkdir_and_rename``: archive an existing folder as BasicSR does, record it and say so."""
        from basicsr.utils import get_time_str
        if osp.exists(path):
            new_name = f'{path}_archived_{get_time_str()}'
            os.rename(path, new_name)
            _moves.append((path, new_name))
            print(f"basicsr: the previous run in '{path}' was moved to '{new_name}'; if this run fails before its "
                  'first checkpoint it is moved back.', file=sys.stderr, flush=True)
        os.makedirs(path, exist_ok=True)

    return archive


def _holds_results(path):
    patterns = ('models/*.pth', 'training_states/*.state', 'visualization/**/*.png')
    return any(glob.glob(osp.join(path, pattern), recursive=True) for pattern in patterns)


def undo_archiving():
    """Move archived folders back when this run failed before writing anything worth keeping.

    Returns:
        list[str]: One line per folder put back (empty when nothing was moved or the new run has results).
    """
    from basicsr.utils import get_time_str
    if not _moves or any(_holds_results(path) for path, _ in _moves if osp.isdir(path)):
        return []
    lines = []
    for path, archived in reversed(_moves):
        if not osp.isdir(archived):
            continue
        failed = None
        if osp.exists(path):
            failed = f'{path}_failed_{get_time_str()}'
            os.rename(path, failed)
        os.rename(archived, path)
        lines.append(f"the previous run is back in '{path}'" + (f" (this run's log: '{failed}')" if failed else ''))
    _moves.clear()
    return lines
