"""Registry filling, BasicSR style: importing a sub-package imports its ``*_<kind>.py`` files."""
import importlib
import os
from os import path as osp


def import_by_suffix(package_name, package_file, suffix):
    """Import every module named ``*<suffix>.py`` beside ``package_file``; returns their names."""
    folder = osp.dirname(osp.abspath(package_file))
    names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(f'{suffix}.py'))
    for name in names:
        importlib.import_module(f'{package_name}.{name}')
    return names


def arch_module_names():
    """Full module names of the plugin's ``*_arch.py`` files."""
    folder = osp.join(osp.dirname(osp.abspath(__file__)), 'archs')
    return [f'ecma_basicsr.archs.{f[:-3]}' for f in sorted(os.listdir(folder)) if f.endswith('_arch.py')]
