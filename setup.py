"""Install the ECMA plugin for the official PyPI ``basicsr`` (1.4.2)."""
from setuptools import find_packages, setup

setup(
    name='ecma_basicsr',
    version='0.1.0',
    description='ECMA (ECCV 2024) image restoration networks as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['ecma_basicsr', 'ecma_basicsr.*', 'datasets_prep', 'datasets_prep.*']),
    package_data={'ecma_basicsr': ['paper_tables.yaml']},
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
    extras_require={'test': ['pytest']},
    entry_points={'console_scripts': ['basicsr=ecma_basicsr.cli:main']},
)
