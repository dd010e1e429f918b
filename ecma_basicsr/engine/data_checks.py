"""Data that cannot be read stops ``basicsr train|test`` with one line naming the file, not a crash.

Two failures of BasicSR's readers that say nothing about which file is at fault:

* a truncated LMDB ``data.mdb``: LMDB memory-maps the file and a read past its end is a SIGBUS
  (the process dies with exit status 135 and no message). :func:`lmdb_backend_init` checks the
  file size against the environment's own record (:mod:`datasets_prep.lmdb_check`) before
  ``basicsr.utils.file_client.LmdbBackend`` opens it;
* a corrupt image: ``basicsr.utils.imfrombytes`` returns ``None`` for bytes OpenCV cannot decode and
  the ``.astype`` after it fails with ``AttributeError: 'NoneType' object has no attribute
  'astype'``. :func:`file_client_get` remembers, per thread, the file (or LMDB and key) each
  ``FileClient.get`` read, and :func:`imfrombytes` raises :class:`DataReadError` naming it.

``basicsr train|test`` then add the dataset option that holds the file (:func:`with_dataset_option`).
The patches are installed by :mod:`.patches` with the rest of the engine.
"""
import os.path as osp
import threading

from ecma_basicsr.errors import UserError

# Every module that binds ``imfrombytes`` by name at import (``from basicsr.utils import imfrombytes``).
IMFROMBYTES_MODULES = (
    'basicsr.utils.img_util', 'basicsr.utils', 'basicsr.data.paired_image_dataset',
    'basicsr.data.single_image_dataset', 'basicsr.data.reds_dataset', 'basicsr.data.vimeo90k_dataset',
    'basicsr.data.ffhq_dataset', 'basicsr.data.realesrgan_dataset', 'basicsr.data.realesrgan_paired_dataset',
    'ecma_basicsr.data.gaussian_noise_dataset',
)

_last_read = threading.local()


class DataReadError(UserError, RuntimeError):
    """A dataset file that cannot be read (truncated LMDB, undecodable image); the message names it."""


def lmdb_backend_init(original):
    def __init__(self, db_paths, *args, **kwargs):
        """``LmdbBackend.__init__``; a truncated ``data.mdb`` is refused before LMDB maps it."""
        from datasets_prep.lmdb_check import size_problem
        for path in ([db_paths] if isinstance(db_paths, str) else list(db_paths)):
            problem = size_problem(str(path))
            if problem:
                raise DataReadError(problem)
        original(self, db_paths, *args, **kwargs)

    return __init__


def describe_source(client, filepath, client_key):
    """``'<file>'`` for the disk backend, ``'<db>.lmdb' key '<key>'`` for LMDB."""
    db_paths = getattr(client, 'db_paths', None)
    if db_paths is not None:
        keys = list(getattr(client, '_client', {}) or {})
        db = db_paths[keys.index(client_key)] if client_key in keys else db_paths[0]
        return f"'{db}' key '{filepath}'"
    return f"'{filepath}'"


def file_client_get(original):
    def get(self, filepath, client_key='default'):
        """``FileClient.get``; remembers what was read, so a decode failure can name it."""
        _last_read.source = describe_source(self.client, filepath, client_key)
        return original(self, filepath, client_key)

    return get


def imfrombytes(original):
    def decode(content, *args, **kwargs):
        """``imfrombytes``; bytes that do not decode raise :class:`DataReadError` naming their file."""
        source = getattr(_last_read, 'source', 'an image')
        if content is None:
            raise DataReadError(f'{source} is missing from the dataset (the LMDB has no such key): rebuild it with '
                                'its datasets_prep command.')
        try:
            img = original(content, *args, **kwargs)
        except AttributeError:  # float32=True: ``None.astype`` right after cv2.imdecode failed
            img = None
        if img is None:
            raise DataReadError(f'{source} is not a decodable image ({len(content)} bytes): replace or delete it '
                                '(an LMDB: rebuild it with its datasets_prep command).')
        return img

    return decode


def dataset_option_for(opt, text):
    """``datasets:<phase>:<key>`` whose path occurs in ``text`` (the longest match), or None."""
    best = None
    for phase, dopt in ((opt or {}).get('datasets') or {}).items():
        for key, value in (dopt or {}).items():
            if not key.startswith('dataroot') or not isinstance(value, str) or not value:
                continue
            for form in {value.rstrip('/'), osp.abspath(value)}:
                if form and form in text and (best is None or len(form) > best[0]):
                    best = (len(form), f'datasets:{phase}:{key}')
    return best[1] if best else None


def with_dataset_option(opt, err):
    """The message of a :class:`DataReadError`, with the dataset option that holds the file.

    A DataLoader worker's error reaches the main process as the same class carrying the worker's
    traceback as text; its last ``DataReadError:`` line is the message.
    """
    message = str(err)
    if 'DataReadError: ' in message:
        message = message.rsplit('DataReadError: ', 1)[1].strip()
    where = dataset_option_for(opt, message)
    if not where:
        return message
    head, sep, tail = message.partition(' is ')  # the source comes first: "'<file>' is not ..."
    return f'{head} ({where}){sep}{tail}' if sep else f'{message} ({where})'
