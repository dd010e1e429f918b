"""The plugin's networks: importing this package imports every ``*_arch.py`` here, which registers
its classes in BasicSR's ``ARCH_REGISTRY``. :func:`fuse_for_inference` is the one entry to the
inference-only rewrites (:mod:`.ecma_fuse`)."""
from ecma_basicsr.registry import import_by_suffix

import_by_suffix(__name__, __file__, '_arch')

from .ecma_fuse import fuse_for_inference  # noqa: E402

__all__ = ['fuse_for_inference']
