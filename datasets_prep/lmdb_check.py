"""Is an LMDB's ``data.mdb`` as long as the environment says? Checked before any read, by prep and training.

LMDB memory-maps ``data.mdb``: a read of a page past the end of a truncated file (an interrupted
copy, a full disk, a partial download) is not an error the library can report, the kernel kills the
process with SIGBUS (exit 135, no message). The two meta pages at the start of the file record the
last page number in use, so ``(last_pgno + 1) * page size`` is the least size a whole file has; a
shorter file is truncated. LMDB reads the meta pages with ``pread`` when it opens a read-only
environment, so the check itself never touches a missing page.

Used by ``python -m datasets_prep verify`` and the prep commands' "is it finished?" test
(:mod:`datasets_prep.lmdb_writer`), by the ``basicsr train|test`` option pre-check and by the
training/testing datasets (:mod:`ecma_basicsr.engine`). It imports only ``lmdb`` and this package's
command table, so the engine can use it without loading the prep code.
"""
import os
import os.path as osp

from .commands import find_command, hint_for_path


def rebuild_hint(path, dataset=None):
    """``delete <path> and rebuild with: <command>`` for an LMDB, from the prep command table.

    ``dataset`` (the name a dataset folder's ``datasets_prep.json`` records) finds the command when
    the path itself does not (a ``--dst`` other than the default); a generic hint otherwise.
    """
    command = find_command(dataset.lower()) if dataset else None
    hint = command.hint() if command and command.src else hint_for_path(path)
    if hint:
        return f"delete '{path}' and rebuild with: {hint}"
    return f"delete '{path}' and rebuild it with the datasets_prep command that wrote it (README, \"Datasets\")"


def expected_size(path):
    """``(actual, expected)`` byte sizes of ``path/data.mdb``; ``expected`` is None when it is not an LMDB.

    Raises:
        OSError: ``data.mdb`` cannot be read at all.
    """
    import lmdb
    data = osp.join(path, 'data.mdb')
    actual = os.path.getsize(data)
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True, max_readers=1)
    except lmdb.Error:
        return actual, None
    try:
        return actual, (env.info()['last_pgno'] + 1) * env.stat()['psize']
    finally:
        env.close()


def size_problem(path, dataset=None):
    """One line when the LMDB folder ``path`` cannot be read safely (truncated or not an LMDB), else None.

    Only ``data.mdb`` is checked here (a missing folder or ``meta_info.txt`` is the callers' own
    message). ``dataset``: see :func:`rebuild_hint`.
    """
    data = osp.join(path, 'data.mdb')
    if not osp.isfile(data):
        return None
    try:
        actual, expected = expected_size(path)
    except OSError as err:
        return f"'{data}' cannot be read ({err.strerror}): {rebuild_hint(path, dataset)}."
    if expected is None:
        return (f"'{data}' is not an LMDB file or is truncated ({actual} bytes): {rebuild_hint(path, dataset)}.")
    if actual < expected:
        return f"'{path}' is truncated ({actual} of {expected} bytes): {rebuild_hint(path, dataset)}."
    return None
