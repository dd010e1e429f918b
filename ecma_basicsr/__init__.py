"""ECMA for BasicSR: registers the ECMA networks, losses, models and datasets with BasicSR.

Importing this package (or any of its networks, losses, models or datasets) does two things only:

* what must precede ``import basicsr`` on current torch / torchvision (:mod:`.import_hook`: the
  ``functional_tensor`` alias finder and the weights-only allow-list of BasicSR's state containers);
* it fills BasicSR's registries, so option files can use ``type: ECMA``, ``type: FFTLoss``,
  ``model_type: ECMAModel`` and ``type: calculate_realblur_psnr``.

It changes no BasicSR function or class. The training runtime (exact resume, safe checkpoints,
CPU/GPU distributed launch, registry messages) is :mod:`.engine`, installed explicitly by
``basicsr train`` / ``basicsr test`` around BasicSR's pipelines.

The ``basicsr`` console script (:mod:`ecma_basicsr_launcher`) is the one exception: it imports the package
with ``ECMA_BASICSR_DEFER_REGISTRY=1`` (read and removed here, so it never reaches a child process) so that
``basicsr --help`` and ``basicsr <command> --help`` answer without loading torch, and calls :func:`register`
before it runs a command.
"""
import os

__version__ = '0.1.0'
DEFER_ENV = 'ECMA_BASICSR_DEFER_REGISTRY'


def register():
    """Install the import-time fixes and fill BasicSR's registries (idempotent; imports torch and basicsr)."""
    from . import import_hook

    import_hook.install()
    from . import archs, data, losses, metrics, models  # noqa: F401  (fill the registries)


if os.environ.pop(DEFER_ENV, None) != '1':
    register()
