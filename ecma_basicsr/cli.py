"""The ``basicsr`` command: ``basicsr train|test|...`` on top of BasicSR's own pipelines.

``train`` and ``test`` take BasicSR's flags unchanged (``-opt``, ``--launcher``,
``--auto_resume``, ``--debug``, ``--force_yml``) and hand over to ``basicsr.train.train_pipeline``
/ ``basicsr.test.test_pipeline`` with the current directory as root, so ``experiments/``,
``results/`` and ``tb_logger/`` land where the user runs the command. Before handing over we
check the option file (missing datasets, unknown network names, arguments, numbers; see
:mod:`ecma_basicsr.engine.options_check`) so errors are one clear line and no folder is touched, and
install the training engine (:mod:`ecma_basicsr.engine`: exact resume, safe checkpoints, CPU/GPU
distributed launch) for the duration of the pipeline. Other subcommands (``bench``, ``restore``, ...)
register themselves in :data:`SUBCOMMANDS`. Any :class:`~ecma_basicsr.errors.UserError` (and a
non-finite training loss; an unreadable dataset file, with the dataset option that holds it) ends the
command with one line, ``basicsr <command>: error: <message>``, and exit status 1.
"""
import argparse
import os
import sys

SUBCOMMANDS = {
    # name: (one-line help, "module:function" taking the remaining argv)
    'train': ('train a network from an option file (BasicSR flags)', 'ecma_basicsr.cli:run_train'),
    'test': ('test a network from an option file (BasicSR flags)', 'ecma_basicsr.cli:run_test'),
    'bench': ('compare networks: params, MACs, latency, memory, PSNR/SSIM', 'ecma_basicsr.bench.cli:main'),
    'restore': ('restore images with a trained network', 'ecma_basicsr.restore:main'),
    'export': ('export a network to ONNX (dynamic size) and check it with onnxruntime', 'ecma_basicsr.export:main'),
    'kernels': ("cluster ECMA's dynamic kernels W-bar on an image (the paper's Fig. 5)", 'ecma_basicsr.kernels:main'),
    'race': ('equal-budget training race: ECMA, its ablations, NAFNet, SwinIR', 'ecma_basicsr.race.run:main'),
    'report': ("the paper's Tables 1-10 beside our test logs and bench runs", 'ecma_basicsr.report:main'),
}


def _pipeline_argv(prog, argv):
    """Validate the option file and set ``sys.argv`` the way BasicSR's ``parse_options`` reads it."""
    from ecma_basicsr.engine.dist import normalize_argv
    from ecma_basicsr.engine.options_check import check_args

    argv = normalize_argv(argv)
    if '-h' in argv or '--help' in argv:
        sys.argv = [prog] + argv  # BasicSR's argparse prints its own flags and exits
        return None
    opt = check_args(argv, is_train=prog.endswith('train'))
    sys.argv = [prog] + argv
    return opt


def _run_pipeline(pipeline, opt):
    """Run a BasicSR pipeline with the engine installed; unreadable data names its dataset option."""
    from ecma_basicsr import engine
    from ecma_basicsr.engine import experiment_dirs
    from ecma_basicsr.engine.data_checks import DataReadError, with_dataset_option
    from ecma_basicsr.errors import UserError

    experiment_dirs.reset()
    try:
        with engine.installed():
            pipeline(os.getcwd())
    except BaseException as err:
        for line in experiment_dirs.undo_archiving():  # a failed run must not take the trained model away
            print(f'basicsr: {line}', file=sys.stderr)
        if isinstance(err, DataReadError):
            raise UserError(with_dataset_option(opt, err)) from None
        raise


PIPELINE_FLAGS = (  # basicsr.utils.options.parse_options of basicsr 1.4.2, shown without importing it
    (('-opt',), dict(required=True, help='path to the option YAML file')),
    (('--launcher',), dict(choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')),
    (('--auto_resume',), dict(action='store_true', help='resume from the latest state in experiments/NAME')),
    (('--debug',), dict(action='store_true', help='debug mode (BasicSR: frequent logging and validation)')),
    (('--local_rank',), dict(type=int, default=0, help='set by the distributed launcher')),
    (('--force_yml',), dict(nargs='+', default=None, help='override option keys, e.g. train:ema_decay=0.999')),
)


def _pipeline_help(prog, argv):
    """``-h`` of train/test: BasicSR's flags, printed without importing torch or basicsr; True if shown."""
    if '-h' not in argv and '--help' not in argv:
        return False
    parser = argparse.ArgumentParser(prog=prog, description=SUBCOMMANDS[prog.split()[-1]][0] + '.')
    for names, kwargs in PIPELINE_FLAGS:
        parser.add_argument(*names, **kwargs)
    parser.print_help()
    return True


def run_train(argv):
    if _pipeline_help('basicsr train', argv):
        return 0
    from basicsr.train import train_pipeline

    _run_pipeline(train_pipeline, _pipeline_argv('basicsr train', argv))


def run_test(argv):
    if _pipeline_help('basicsr test', argv):
        return 0
    from basicsr.test import test_pipeline

    _run_pipeline(test_pipeline, _pipeline_argv('basicsr test', argv))


def _resolve(target):
    import importlib
    module, func = target.split(':')
    return getattr(importlib.import_module(module), func)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='basicsr', description='BasicSR with the ECMA plugin. Run `basicsr <command> -h` for its flags.')
    sub = parser.add_subparsers(dest='command', metavar='command')
    for name, (help_text, _) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None):
    from ecma_basicsr.errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        if argv and not argv[0].startswith('-'):
            parser.error(f"unknown command '{argv[0]}'; choose one of: {', '.join(SUBCOMMANDS)}")
        parser.parse_args(argv)  # handles -h / --help
        parser.print_help()
        return 2
    if '-h' not in argv[1:] and '--help' not in argv[1:]:
        import ecma_basicsr
        ecma_basicsr.register()  # deferred by the console script (ecma_basicsr_launcher) so --help stays fast
    try:
        result = _resolve(SUBCOMMANDS[argv[0]][1])(argv[1:])
    except (UserError, FloatingPointError) as err:
        print(f'basicsr {argv[0]}: error: {err}', file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == '__main__':
    sys.exit(main())
