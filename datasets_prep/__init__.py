"""Dataset preparation for ECMA for BasicSR: public archives -> BasicSR's LMDB and folder layouts.

One subcommand per dataset (``python -m datasets_prep <name> --src ... --dst datasets/<Name>``),
plus ``sample`` (offline sample sets from scikit-image photographs, in the same layouts) and
``verify`` (re-open LMDBs and folder pairs and check them). See ``README.md`` ("Datasets").

Modules:
    commands: the table of subcommands (arguments, default outputs, functions) that the command
        line, the option-file checks and the option-file generator all read.
    common: image reading/writing, sliding-window crops, parallel map, manifests, errors.
    lmdb_writer: the shared LMDB writer (temporary name, growing map size) and its verifier.
    bicubic: MATLAB-exact bicubic downscaling of uint8 images.
    sr: DIV2K and the SR test sets (Set5, Set14, B100, Urban100, Manga109).
    gopro, hide, realblur, reds, sidd: the deblurring and denoising benchmarks.
    sample: sample sets built from scikit-image photographs with each task's degradation.
    verify: the ``verify`` subcommand.

This package does not import torch or basicsr at import time; only the SR subcommands (which
need basicsr's bicubic weights) do, so the deblurring tools start quickly.
"""
