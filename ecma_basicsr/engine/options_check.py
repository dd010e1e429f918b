"""Checks an option file before BasicSR starts, so a missing dataset fails in one clear line.

BasicSR would otherwise fail deep inside a dataset constructor (or, for LMDB, on the first
read). We check every ``dataroot_*`` / ``meta_info_file`` path, and that an LMDB folder has the
files BasicSR's ``lmdb`` backend needs, and name the ``datasets_prep`` command that builds it.
"""
import os.path as osp

import yaml

from ecma_basicsr.errors import UserError

# Path fragment -> the datasets_prep command that builds data containing it (first match wins, so
# the more specific fragments come first). Keep in step with datasets_prep/__main__.py and the
# default --dst folders there; README.md "Datasets" lists the same commands.
_SR_SET = ('python -m datasets_prep {cmd} --src <{name} folder: HR/*.png or the images> '
           '--dst datasets/SR_benchmark/{name} (all sets at once: python -m datasets_prep srbench '
           '--src <benchmark root> --dst datasets/SR_benchmark; offline sample: python -m datasets_prep sample '
           '--task sr --like {cmd} --dst datasets/SR_benchmark/{name})')
PREP_COMMANDS = {
    'DIV2K': ('python -m datasets_prep div2k --src <folder with DIV2K_train_HR/, DIV2K_valid_HR/> --dst datasets/DIV2K '
              '(offline sample: python -m datasets_prep sample --task sr --dst datasets/DIV2K)'),
    'GoPro': ('python -m datasets_prep gopro --src <unpacked GOPRO_Large.zip, or the train/ + test/ repack> '
              '--dst datasets/GoPro (offline sample: python -m datasets_prep sample --task deblur --dst datasets/GoPro)'),
    'HIDE': ('python -m datasets_prep hide --src <unpacked HIDE_dataset.zip> --dst datasets/HIDE '
             '(offline sample: python -m datasets_prep sample --task deblur --like hide --dst datasets/HIDE)'),
    'RealBlur_J': ('python -m datasets_prep realblur_j --src <unpacked RealBlur.tar.gz with the list files> '
                   '--dst datasets/RealBlur_J'),
    'RealBlur_R': ('python -m datasets_prep realblur_r --src <unpacked RealBlur.tar.gz with the list files> '
                   '--dst datasets/RealBlur_R'),
    'RealBlur': ('python -m datasets_prep realblur_j (or realblur_r) --src <unpacked RealBlur.tar.gz> '
                 '--dst datasets/RealBlur_J (or datasets/RealBlur_R)'),
    'REDS': ('python -m datasets_prep reds --src <folder with train/train_blur_jpeg, train/train_sharp, val/...> '
             '--dst datasets/REDS'),
    'SIDD': ('python -m datasets_prep sidd --src <folder with SIDD_Medium_Srgb/ and Validation*BlocksSrgb.mat> '
             '--dst datasets/SIDD (offline sample: python -m datasets_prep sample --task denoise --dst datasets/SIDD)'),
    'Set5': _SR_SET.format(cmd='set5', name='Set5'),
    'Set14': _SR_SET.format(cmd='set14', name='Set14'),
    'B100': _SR_SET.format(cmd='b100', name='B100'),
    'Urban100': _SR_SET.format(cmd='urban100', name='Urban100'),
    'Manga109': _SR_SET.format(cmd='manga109', name='Manga109'),
}

_PATH_KEYS = ('dataroot_gt', 'dataroot_lq', 'meta_info_file')


class OptionError(UserError, ValueError):
    """An option file that cannot run as written; the message says what to change."""


def prep_hint(path):
    for fragment, command in PREP_COMMANDS.items():
        if fragment.lower() in path.lower():
            return f' Build it with: {command}'
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
                for need in ('data.mdb', 'meta_info.txt'):
                    if not osp.isfile(osp.join(path, need)):
                        problems.append(f"{where} = '{path}' is not a complete LMDB (no {need})."
                                        f'{prep_hint(path)}')
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
    """Pre-flight for ``basicsr train|test`` argv: option file, overrides, types and data paths."""
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args(argv)
    opt = apply_force_yml(load_yaml(args.opt), args.force_yml)
    problems = check_registered_types(opt) + missing_dataset_paths(opt)
    if problems:
        raise OptionError(f'{args.opt}:\n  ' + '\n  '.join(problems))
