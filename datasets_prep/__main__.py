"""Command line: ``python -m datasets_prep <dataset> --src <unpacked archive> --dst datasets/<Name>``.

The subcommands, their arguments and the functions they call are the table
:data:`datasets_prep.commands.COMMANDS`; ``python -m datasets_prep -h`` lists them. Each prints
what it found and what it skipped; a finished output is never rebuilt (delete it to force that).
Errors in the source layout or images exit with status 2 and a message naming the file or
folder; ``verify`` exits with 1 when it finds a problem.
"""
import argparse
import importlib
import inspect
import sys

from .commands import COMMANDS, PROG, find_command
from .common import PrepError, check_workers


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description='Public dataset archives -> the LMDB and folder layouts '
                                     'the option files use (one subcommand per dataset).')
    sub = parser.add_subparsers(dest='cmd', required=True, metavar='<subcommand>')
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, aliases=list(command.aliases), help=command.help)
        if command.src:
            p.add_argument('--src', required=True, help=f'source folder: {command.src}')
        if command.common:
            p.add_argument('--dst', required=command.dst is None, default=command.dst,
                           help=f'output folder{f" (default {command.dst})" if command.dst else ""}')
            p.add_argument('--workers', type=int, default=1, help='processes for reading/encoding (default 1)')
        for arg in command.args:
            p.add_argument(*arg.flags, **arg.kwargs)
    return parser


def resolve(command):
    """The function a command calls (``'module:function'`` imported on demand, so only it is loaded)."""
    module, func = command.target.split(':')
    return getattr(importlib.import_module(module), func)


def call_arguments(command, args, fn):
    """Keyword arguments for ``fn``: the parsed values whose names are its parameters, plus ``fixed``."""
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in vars(args).items() if k in params}
    kwargs.update(command.fixed)
    return kwargs


def run(args):
    command = find_command(args.cmd)
    if getattr(args, 'workers', None) is not None:
        check_workers(args.workers)
    fn = resolve(command)
    result = fn(**call_arguments(command, args, fn))
    return result if isinstance(result, int) else 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PrepError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
