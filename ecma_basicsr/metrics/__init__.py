"""Imports every `*_metric.py` here so its functions register with BasicSR's METRIC_REGISTRY."""
from ecma_basicsr.registry import import_by_suffix

import_by_suffix(__name__, __file__, '_metric')
