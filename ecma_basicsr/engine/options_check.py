"""Checks an option file before BasicSR starts, so a missing dataset fails in one clear line.

BasicSR would otherwise fail deep inside a dataset constructor (or, for LMDB, on the first
read). We check every ``dataroot_*`` / ``meta_info_file`` path, and that an LMDB folder has the
files BasicSR's ``lmdb`` backend needs, and name the ``datasets_prep`` command that builds it
(read from that package's command table, ``datasets_prep.commands``).
"""
import os.path as osp

import yaml

from ecma_basicsr.errors import UserError

_PATH_KEYS = ('dataroot_gt', 'dataroot_lq', 'meta_info_file')


class OptionError(UserError, ValueError):
    """An option file that cannot run as written; the message says what to change."""


def prep_hint(path):
    """`` Build it with: <command>`` for a dataset path, from the ``datasets_prep`` command table."""
    from datasets_prep.commands import hint_for_path
    hint = hint_for_path(path)
    if hint:
        return f' Build it with: {hint}'
    return ' See README.md, section "Datasets", for the datasets_prep command that builds it.'


def missing_dataset_paths(opt):
    """Return one message per missing dataset path in a parsed option dict."""
    problems = []
    for phase, dopt in (opt.get('datasets') or {}).items():
        lmdb = (dopt.get('io_backend') or {}).get('type') == 'lmdb'
        for key in _PATH_KEYS:
            path = dopt.get(key)
            if path is None:
                continue
            where = f"datasets:{phase}:{key}"
            if not osp.exists(path):
                problems.append(f"{where} = '{path}' does not exist.{prep_hint(path)}")
            elif lmdb and key != 'meta_info_file':
                missing = [need for need in ('data.mdb', 'meta_info.txt') if not osp.isfile(osp.join(path, need))]
                for need in missing:
                    problems.append(f"{where} = '{path}' is not a complete LMDB (no {need})."
                                    f'{prep_hint(path)}')
                if not missing:
                    from datasets_prep.lmdb_check import size_problem
                    truncated = size_problem(path)  # a read past the end of data.mdb would be a SIGBUS
                    if truncated:
                        problems.append(f'{where}: {truncated}')
    return problems


def load_yaml(path):
    if not osp.isfile(path):
        raise OptionError(f"Option file '{path}' does not exist.")
    with open(path) as f:
        return yaml.safe_load(f)


def _force_yml_value(text):
    from basicsr.utils.options import _postprocess_yml_value
    return _postprocess_yml_value(text)


def apply_force_yml(opt, entries):
    """Apply ``--force_yml a:b=c`` overrides the way BasicSR does, without ``exec``."""
    for entry in entries or []:
        if '=' not in entry:
            raise OptionError(f"--force_yml '{entry}' must look like key:subkey=value.")
        keys, value = (part.strip() for part in entry.split('=', 1))
        node = opt
        *parents, last = keys.split(':')
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise OptionError(f"--force_yml '{entry}': no section '{key}' in the option file.")
            node = node[key]
        node[last] = _force_yml_value(value)
    return opt


def check_registered_types(opt):
    """Unknown ``type:`` names fail here with the list of valid choices."""
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
    problems = []
    checks = [('model_type', opt.get('model_type'), MODEL_REGISTRY)]
    checks += [(f'{k}:type', v.get('type'), ARCH_REGISTRY) for k, v in opt.items()
               if k.startswith('network_') and isinstance(v, dict)]
    checks += [(f'train:{k}:type', v.get('type'), LOSS_REGISTRY) for k, v in (opt.get('train') or {}).items()
               if k.endswith('_opt') and isinstance(v, dict) and 'type' in v]
    for where, name, registry in checks:
        if name is not None and name not in registry:
            choices = ', '.join(sorted(k for k in registry.keys() if not k.endswith('_basicsr')))
            problems.append(f"{where} = '{name}' is not registered. Valid choices: {choices}.")
    return problems


def check_args(argv):
    """Pre-flight for ``basicsr train|test`` argv: option file, overrides, types and data paths.

    Returns:
        dict: The option file with the ``--force_yml`` overrides applied.
    """
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args(argv)
    opt = apply_force_yml(load_yaml(args.opt), args.force_yml)
    problems = check_registered_types(opt) + missing_dataset_paths(opt)
    if problems:
        raise OptionError(f'{args.opt}:\n  ' + '\n  '.join(problems))
    return opt
