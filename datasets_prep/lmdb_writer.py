"""The shared LMDB writer and reader-side checks, in BasicSR's LMDB format.

Format (the one ``basicsr.utils.lmdb_util`` writes and ``PairedImageDataset`` reads with
``io_backend: lmdb``)::

    X.lmdb/data.mdb        values: PNG bytes (cv2.imencode, compression level c)
    X.lmdb/lock.mdb
    X.lmdb/meta_info.txt   one line per key: "<key>.png (h,w,c) <c>"

Two properties BasicSR's own writer lacks, and why:

* **Never looks complete when it is not.** Everything is written into ``X.lmdb.partial`` and
  renamed to ``X.lmdb`` only after the last commit and ``meta_info.txt``; ``rename`` is atomic, so
  an interrupted run (even SIGKILL) leaves at most a ``.partial`` folder, which the next run
  deletes and rebuilds. The existence of ``X.lmdb`` therefore means "finished".
* **No MDB_MAP_FULL.** The map starts small and doubles before a batch would not fit (and, as a
  fallback, when LMDB reports it full), so no size estimate is needed.
"""
import os
import os.path as osp
import re
import shutil

import cv2
import lmdb
import numpy as np

from .common import PrepError, encode_png, unpaired_message
from .lmdb_check import size_problem

DEFAULT_MAP_SIZE = 64 * 1024 ** 2
PARTIAL_SUFFIX = '.partial'
_META_RE = re.compile(r'^(?P<name>\S+) \((?P<h>\d+),(?P<w>\d+),(?P<c>\d+)\) (?P<level>\d+)$')


def check_key(key, where):
    """Raise PrepError when ``key`` would not survive BasicSR's key parsing."""
    if not key:
        raise PrepError(f'{where}: empty LMDB key.')
    if '.' in key:
        raise PrepError(f"{where}: LMDB key '{key}' contains '.', which BasicSR cuts off when it reads "
                        "meta_info.txt (line.split('.')[0]); rename it, e.g. replace '.' with '_'.")
    if any(ch.isspace() for ch in key):
        raise PrepError(f"{where}: LMDB key '{key}' contains white space, which breaks meta_info.txt "
                        'parsing; rename it.')
    try:
        key.encode('ascii')
    except UnicodeEncodeError:
        raise PrepError(f"{where}: LMDB key '{key}' is not ASCII; BasicSR encodes keys as ASCII.") from None


class LmdbWriter:
    """Write one BasicSR-format LMDB under a temporary name, rename it when complete.

    Args:
        path (str): Final folder, must end with ``.lmdb``.
        compress_level (int): PNG level used by :meth:`put_image` and recorded in ``meta_info.txt``.
        map_size (int): Initial map size in bytes; grows by doubling as needed.
        batch_bytes (int): Commit after this many bytes of values.

    Use :meth:`put_image` or :meth:`put_encoded`, then :meth:`commit` (or :meth:`abort`).
    """

    def __init__(self, path, compress_level=1, map_size=DEFAULT_MAP_SIZE, batch_bytes=64 * 1024 ** 2):
        if not path.endswith('.lmdb'):
            raise PrepError(f"LMDB path '{path}' must end with '.lmdb' (BasicSR checks this suffix).")
        if osp.exists(path):
            raise PrepError(f"'{path}' already exists; it is complete (delete it to rebuild).")
        self.path = path
        self.tmp = path + PARTIAL_SUFFIX
        if osp.exists(self.tmp):
            # Left over by an interrupted run: its content is unknown, so start again.
            shutil.rmtree(self.tmp)
        os.makedirs(self.tmp)
        self.compress_level = int(compress_level)
        self.map_size = int(map_size)
        self.batch_bytes = batch_bytes
        self.env = lmdb.open(self.tmp, map_size=self.map_size, subdir=True, lock=True)
        self.meta = []
        self.keys = set()
        self.pending = []
        self.pending_bytes = 0

    def put_image(self, key, img):
        """Encode ``img`` (uint8 BGR, HxWx3 or HxW) as PNG and store it under ``key``."""
        shape = img.shape if img.ndim == 3 else img.shape + (1,)
        self.put_encoded(key, encode_png(img, self.compress_level), shape)

    def put_encoded(self, key, data, shape):
        """Store PNG bytes ``data`` under ``key``; ``shape`` is (h, w, c) for ``meta_info.txt``."""
        check_key(key, self.path)
        if key in self.keys:
            raise PrepError(f"{self.path}: duplicate key '{key}'; two source files map to the same name.")
        self.keys.add(key)
        h, w, c = (int(v) for v in shape)
        self.meta.append(f'{key}.png ({h},{w},{c}) {self.compress_level}\n')
        self.pending.append((key.encode('ascii'), bytes(data)))
        self.pending_bytes += len(data)
        if self.pending_bytes >= self.batch_bytes:
            self._flush()

    def _used_bytes(self):
        return (self.env.info()['last_pgno'] + 1) * self.env.stat()['psize']

    def _grow(self, needed):
        new = self.map_size
        while new < needed:
            new *= 2
        if new != self.map_size:
            self.env.set_mapsize(new)
            self.map_size = new

    def _flush(self):
        if not self.pending:
            return
        # B-tree pages add overhead on top of the values: ask for twice the payload up front.
        self._grow(self._used_bytes() + 2 * self.pending_bytes + 1024 ** 2)
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, data in self.pending:
                        txn.put(key, data)
                break
            except lmdb.MapFullError:
                # The transaction was aborted by the context manager; retry with more room.
                self._grow(self.map_size * 2)
        self.pending = []
        self.pending_bytes = 0

    def commit(self):
        """Flush, write ``meta_info.txt`` and rename to the final name. Returns the entry count."""
        self._flush()
        self.env.sync(True)
        self.env.close()
        self.env = None
        meta = osp.join(self.tmp, 'meta_info.txt')
        with open(meta, 'w') as f:
            f.writelines(self.meta)
            f.flush()
            os.fsync(f.fileno())
        os.rename(self.tmp, self.path)
        return len(self.meta)

    def abort(self):
        """Close and delete the temporary LMDB (safe to call after :meth:`commit`)."""
        if self.env is not None:
            self.env.close()
            self.env = None
        if osp.exists(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)


def read_meta(path):
    """Parse ``meta_info.txt`` of an LMDB.

    Returns:
        tuple: (entries, problems): entries is a list of ``(key, (h, w, c), level)``; problems a
        list of messages for malformed lines.
    """
    entries, problems = [], []
    meta = osp.join(path, 'meta_info.txt')
    with open(meta) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip('\n')
            m = _META_RE.match(line)
            if not m:
                problems.append(f"{meta}:{lineno}: '{line}' is not '<key>.png (h,w,c) <level>'.")
                continue
            name = m.group('name')
            key = name[:-4] if name.endswith('.png') else None
            if key is None or '.' in key:
                problems.append(f"{meta}:{lineno}: name '{name}' must be '<key>.png' with no other dot "
                                "(BasicSR keeps only the part before the first '.').")
                continue
            shape = (int(m.group('h')), int(m.group('w')), int(m.group('c')))
            entries.append((key, shape, int(m.group('level'))))
    return entries, problems


def lmdb_count(path):
    """Number of lines in a finished LMDB's meta_info.txt."""
    with open(osp.join(path, 'meta_info.txt')) as f:
        return sum(1 for line in f if line.strip())


def is_complete(path):
    """True when ``path`` is a finished LMDB from this writer (or BasicSR's).

    Raises:
        PrepError: The folder exists but its meta_info.txt and data.mdb disagree in size, which a
            finished LMDB never does; the message asks to delete it.
    """
    if not osp.isdir(path):
        return False
    missing = [n for n in ('data.mdb', 'meta_info.txt') if not osp.isfile(osp.join(path, n))]
    if missing:
        raise PrepError(f"'{path}' exists but has no {' or '.join(missing)}: it was not written by a "
                        'finished run. Delete it and rerun.')
    truncated = size_problem(path)
    if truncated:
        raise PrepError(truncated)
    lines = lmdb_count(path)
    env = lmdb.open(path, readonly=True, lock=False, readahead=False)
    try:
        entries = env.stat()['entries']
    finally:
        env.close()
    if entries != lines:
        raise PrepError(f"'{path}' has {entries} entries in data.mdb but {lines} lines in meta_info.txt. "
                        'Delete it and rerun, or run `python -m datasets_prep verify` on it for details.')
    return True


def verify_lmdb(path, expect_count=None, decode=True, dataset=None):
    """Check one LMDB the way BasicSR will use it.

    Checks: the three files exist; every ``meta_info.txt`` line parses; every key is in
    ``data.mdb`` and (when ``decode``) decodes to the recorded shape; no key of ``data.mdb`` is
    missing from ``meta_info.txt``; no duplicates; and the count when ``expect_count`` is given.

    Returns:
        tuple: (entries, problems) as in :func:`read_meta`; ``problems`` empty means OK.
    """
    problems = []
    if not path.rstrip('/').endswith('.lmdb'):
        problems.append(f"'{path}': BasicSR's lmdb backend requires the folder name to end with '.lmdb'.")
    if not osp.isdir(path):
        if osp.isdir(path + PARTIAL_SUFFIX):
            return [], [f"'{path}' does not exist, but '{path}{PARTIAL_SUFFIX}' does: an interrupted run; "
                        'rerun the datasets_prep command to finish it.']
        return [], [f"'{path}' does not exist."]
    for need in ('data.mdb', 'lock.mdb', 'meta_info.txt'):
        if not osp.isfile(osp.join(path, need)):
            problems.append(f"'{path}': no {need}.")
    if problems:
        return [], problems
    truncated = size_problem(path, dataset)  # before any read: a page past the end of the file is a SIGBUS
    if truncated:
        return [], [truncated]
    entries, meta_problems = read_meta(path)
    problems += meta_problems
    seen = set()
    for key, _, _ in entries:
        if key in seen:
            problems.append(f"'{path}': key '{key}' is listed twice in meta_info.txt.")
        seen.add(key)
    env = lmdb.open(path, readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            for key, shape, _ in entries:
                data = txn.get(key.encode('ascii'))
                if data is None:
                    problems.append(f"'{path}': key '{key}' is in meta_info.txt but not in data.mdb.")
                    continue
                if not decode:
                    continue
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                if img is None:
                    problems.append(f"'{path}': the value of key '{key}' is not a decodable image.")
                    continue
                got = img.shape if img.ndim == 3 else img.shape + (1,)
                if tuple(got) != shape:
                    problems.append(f"'{path}': key '{key}' decodes to shape {tuple(got)} but meta_info.txt "
                                    f'says {shape}.')
            n_db = env.stat()['entries']
            if n_db != len(seen):
                extra = []
                for raw in txn.cursor().iternext(keys=True, values=False):
                    k = raw.decode('ascii', 'replace')
                    if k not in seen:
                        extra.append(k)
                        if len(extra) >= 5:
                            break
                if extra:
                    problems.append(f"'{path}': data.mdb holds {n_db} keys, meta_info.txt lists {len(seen)}; "
                                    f"not listed: {', '.join(extra)}{' ...' if len(extra) >= 5 else ''}.")
    finally:
        env.close()
    if expect_count is not None and len(entries) != expect_count:
        problems.append(f"'{path}': {len(entries)} entries, expected {expect_count}.")
    return entries, problems


def verify_lmdb_group(paths, expect_count=None, decode=True, dataset=None):
    """Verify LMDBs that BasicSR pairs (e.g. ``[lq.lmdb, gt.lmdb]``): each one, then the pairing.

    Pairing: identical key sets (BasicSR raises otherwise), and the same size ratio to the first
    LMDB for every key (a wrongly sized image in one LMDB shows up here).

    Returns:
        list[str]: Problems; empty means OK.
    """
    problems = []
    shapes = []
    for path in paths:
        entries, found = verify_lmdb(path, expect_count, decode, dataset)
        problems += found
        shapes.append({k: s for k, s, _ in entries})
    if len(paths) < 2 or problems:
        return problems
    first = shapes[0]
    for path, other in zip(paths[1:], shapes[1:]):
        only_a = sorted(set(first) - set(other))
        only_b = sorted(set(other) - set(first))
        if only_a or only_b:
            problems.append(unpaired_message(paths[0], len(first), only_a, path, len(other), only_b, what='keys'))
            continue
        ratios = {}
        for key, (h, w, _) in first.items():
            oh, ow, _ = other[key]
            ratios.setdefault((oh / h, ow / w), []).append(key)
        if len(ratios) > 1:
            common = max(ratios, key=lambda r: len(ratios[r]))
            odd = [k for r, keys in ratios.items() if r != common for k in keys]
            problems.append(f"'{path}' vs '{paths[0]}': the size ratio is {common} for most keys but differs "
                            f'for {odd[:5]}; those images have the wrong shape.')
    return problems
