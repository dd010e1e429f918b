"""Install the ECMA plugin for the official PyPI ``basicsr`` (1.4.2).

Besides the packages, the install puts one start-up hook into site-packages,
``ecma_basicsr-import-hook.pth`` (its line is ``ecma_basicsr.import_hook.PTH_LINE``), so that a plain
``import basicsr`` works under current torchvision; see ``ecma_basicsr/import_hook.py``.
"""
import os
import runpy

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = os.path.dirname(os.path.abspath(__file__))
# import_hook.py imports only the standard library, so running it here imports no dependency.
HOOK = runpy.run_path(os.path.join(HERE, 'ecma_basicsr', 'import_hook.py'))


def write_hook(folder):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, HOOK['PTH_NAME'])
    with open(path, 'w', encoding='utf-8') as f:
        f.write(HOOK['PTH_LINE'] + '\n')
    return path


class BuildPyWithImportHook(build_py):
    """``build_py`` that also writes the start-up ``.pth`` file at the top of site-packages."""

    def _hook_dir(self):
        if getattr(self, 'editable_mode', False):
            # PEP 660 (pip install -e): build_lib is discarded; setuptools' editable_wheel packs the
            # wheel from the install folder, where it also puts the non-editable files (data, scripts).
            return self.get_finalized_command('install').install_lib
        return self.build_lib

    def run(self):
        super().run()
        write_hook(self._hook_dir())

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, 'editable_mode', False):
            outputs.append(os.path.join(self.build_lib, HOOK['PTH_NAME']))
        return outputs


class DevelopWithImportHook(develop):
    """Legacy ``setup.py develop`` (what pip < 25 runs for ``pip install -e .``): the hook goes beside the egg-link.

    ``pip uninstall`` of such an install leaves the ``.pth`` behind; it finds no ``ecma_basicsr`` then and
    does nothing.
    """

    def run(self):
        super().run()
        path = os.path.join(self.install_dir, HOOK['PTH_NAME'])
        if self.uninstall:
            if os.path.exists(path):
                os.remove(path)
        else:
            write_hook(self.install_dir)


setup(
    name='ecma_basicsr',
    version='0.1.0',
    description='ECMA (ECCV 2024) image restoration networks as a BasicSR plugin',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['ecma_basicsr', 'ecma_basicsr.*', 'datasets_prep', 'datasets_prep.*']),
    py_modules=['ecma_basicsr_launcher'],  # the console script, outside the package: --help without torch
    cmdclass={'build_py': BuildPyWithImportHook, 'develop': DevelopWithImportHook},
    package_data={'ecma_basicsr': ['paper_tables.yaml', 'archs/native/*.c']},
    install_requires=[
        'basicsr==1.4.2',
        'torch>=2.1',
        'torchvision>=0.16',
        'mmengine>=0.10',
        'lmdb',
        'opencv-python',
        'scipy',
        'numpy',
        'scikit-image',
        'matplotlib',
        'pyyaml',
        'tqdm',
    ],
    extras_require={
        # basicsr export (ONNX through torch.export, checked with onnxruntime on the CPU)
        'deploy': ['onnx', 'onnxscript', 'onnxruntime'],
        # the tests run the ONNX export round-trip too, so CI needs the deploy packages
        'test': ['pytest', 'ruff', 'onnx', 'onnxscript', 'onnxruntime'],
    },
    entry_points={'console_scripts': ['basicsr=ecma_basicsr_launcher:main']},
)
