"""ECMA for BasicSR: registers the ECMA networks, losses, models and datasets.

Importing this package patches ``basicsr==1.4.2`` for current torch (see :mod:`.compat`) and
fills BasicSR's registries, so option files can use ``type: ECMA``, ``type: FFTLoss``,
``type: ECMAModel`` and ``type: calculate_realblur_psnr``.
"""
from . import compat

compat.apply()

from . import archs, data, losses, metrics, models  # noqa: E402,F401  (fill the registries)

__version__ = '0.1.0'
