"""The ``basicsr`` console script: ``ecma_basicsr.cli.main`` with the plugin's registration deferred.

Importing :mod:`ecma_basicsr` fills BasicSR's registries, which loads torch, torchvision and basicsr (6-13 s
on a busy 2-core machine). This module sits outside the package so it can ask the package to skip that
(``ECMA_BASICSR_DEFER_REGISTRY``); :func:`ecma_basicsr.cli.main` then registers only when a command
runs, and ``--help`` of the command and of every subcommand answers without torch.
"""
import os
import sys


def main(argv=None):
    if 'ecma_basicsr' not in sys.modules:
        os.environ['ECMA_BASICSR_DEFER_REGISTRY'] = '1'  # the package reads and removes it
    from ecma_basicsr.cli import main as cli_main
    return cli_main(argv)


if __name__ == '__main__':
    sys.exit(main())
