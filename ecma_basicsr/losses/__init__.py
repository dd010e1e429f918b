"""Imports every `*_loss.py` here so its classes register with BasicSR's registries."""
from ecma_basicsr.registry import import_by_suffix

import_by_suffix(__name__, __file__, '_loss')
