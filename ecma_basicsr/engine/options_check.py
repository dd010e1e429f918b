"""Checks an option file before BasicSR starts, so what cannot run fails in one clear line and touches nothing.

BasicSR would otherwise fail deep inside a dataset constructor, on the first LMDB read (a SIGBUS
for a truncated ``data.mdb``), or while building the model, after ``make_exp_dirs`` has already
moved the previous ``experiments/<name>/`` away. Checked here, in this order:

* the file itself: YAML syntax (``file:line:column``), read with YAML 1.2 numbers
  (:mod:`.yaml_values`: ``1e-4`` is a float) and the ``--force_yml`` overrides applied (a new
  key is warned about, with the closest existing one);
* registered ``type:`` names, network arguments against the constructor's signature, and counts
  and rates that are not numbers;
* for ``basicsr train``: optimizers, the scheduler, losses and metrics, built or bound on dummies
  (:func:`check_training`);
* ``path:pretrain_network_*`` files, every ``dataroot_*`` / ``meta_info_file`` path, that an LMDB
  folder has the files BasicSR's ``lmdb`` backend needs and a ``data.mdb`` as long as the
  environment says (:mod:`datasets_prep.lmdb_check`), naming the ``datasets_prep`` command that
  builds it (read from that package's command table, ``datasets_prep.commands``).
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
    """The option file as a dict, read as the pipeline will read it (``1e-4`` is a number)."""
    from ecma_basicsr.engine.yaml_values import NumberLoader
    if not osp.isfile(path):
        raise OptionError(f"Option file '{path}' does not exist.")
    with open(path) as f:
        try:
            opt = yaml.load(f, Loader=NumberLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark else path
            raise OptionError(f'{where}: not valid YAML: {err.problem or err.context}.') from None
        except yaml.YAMLError as err:
            raise OptionError(f'{path}: not valid YAML: {err}.') from None
    if not isinstance(opt, dict):
        raise OptionError(f'{path}: an option file is a YAML mapping (name:, model_type:, ...), '
                          f'not {type(opt).__name__}.')
    return opt


def apply_force_yml(opt, entries, warn=None):
    """Apply ``--force_yml a:b=c`` overrides the way BasicSR does, without ``exec``.

    Values are read as YAML 1.2 (``1e-4`` is a float, :func:`.yaml_values.parse_value`). An
    override that creates a key the option file does not have is applied (BasicSR allows it) and
    reported through ``warn(message)`` with the closest existing keys, since it is usually a typo.
    """
    import difflib

    from ecma_basicsr.engine.yaml_values import parse_value
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
        try:
            parsed = parse_value(value)
        except ValueError as err:
            raise OptionError(f"--force_yml '{entry}': {err}.") from None
        if last not in node and warn is not None:
            close = difflib.get_close_matches(last, [str(k) for k in node], n=3)
            hint = f" (did you mean {' or '.join(repr(':'.join(parents + [c])) for c in close)}?)" if close else ''
            warn(f"--force_yml '{entry}' adds '{keys}', which the option file does not have{hint}.")
        node[last] = parsed
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
    return problems + check_network_arguments(opt)


def check_network_arguments(opt):
    """``network_*`` arguments the constructor does not take (a typo, an argument of another network)."""
    import inspect

    from basicsr.utils.registry import ARCH_REGISTRY
    problems = []
    for key, value in opt.items():
        if not (key.startswith('network_') and isinstance(value, dict) and value.get('type') in ARCH_REGISTRY):
            continue
        kwargs = {k: v for k, v in value.items() if k != 'type'}
        try:
            inspect.signature(ARCH_REGISTRY.get(value['type'])).bind(**kwargs)
        except TypeError as err:
            problems.append(f"{key}: {value['type']} {err}.")
    return problems


# Keys BasicSR turns into counts (``int(...)``) or uses in arithmetic; a string there fails late.
_INT_KEYS = {('train', 'total_iter'), ('train', 'warmup_iter'), ('val', 'val_freq'), ('logger', 'print_freq'),
             ('logger', 'save_checkpoint_freq'), ('scale',), ('manual_seed',)}  # num_gpu may be 'auto'
_DATASET_INT_KEYS = ('batch_size_per_gpu', 'num_worker_per_gpu', 'gt_size', 'dataset_enlarge_ratio')
_NUMBER_KEYS = ('lr', 'weight_decay', 'eta_min', 'loss_weight', 'ema_decay', 'momentum', 'eps')


def _is_number(value, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not integer or float(value).is_integer()


def _type_problem(where, value, integer):
    if value is None or _is_number(value, integer):
        return None
    what = 'an integer' if integer else 'a number'
    return f'{where} = {value!r} ({type(value).__name__}) must be {what}.'


def check_numbers(opt):
    """Counts and rates that are not numbers (``lr: abc``, ``total_iter: '5k'``), by option path."""
    problems = []
    for keys in sorted(_INT_KEYS):
        node = opt
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        problems.append(_type_problem(':'.join(keys), node, True))
    for phase, dopt in (opt.get('datasets') or {}).items():
        for key in _DATASET_INT_KEYS:
            problems.append(_type_problem(f'datasets:{phase}:{key}', (dopt or {}).get(key), True))

    def walk(node, where):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f'{where}:{key}')
            elif key in _NUMBER_KEYS:
                problems.append(_type_problem(f'{where}:{key}', value, False))
    walk(opt.get('train') or {}, 'train')
    return [p for p in problems if p]


def _call_problem(where, fn, *args, **kwargs):
    """Call ``fn`` (cheap: a dummy parameter, no data); its refusal as one line, or None."""
    try:
        fn(*args, **kwargs)
    except AttributeError:
        return None  # the method needs a real model (``self``); it cannot be tried on a dummy
    except Exception as err:  # noqa: BLE001  (whatever the real construction would raise later)
        text = str(err).strip().rstrip('.')
        return f'{text}.' if text.startswith(where) else f'{where}: {text} ({type(err).__name__}).'
    return None


def check_training(opt):
    """What ``basicsr train`` builds from the ``train``/``val`` sections, tried before any folder is touched.

    Optimizers are built by the model class's own ``get_optimizer`` on one dummy parameter and
    schedulers on a dummy optimizer (BasicSR's choices), so an unknown name or a bad argument fails
    here instead of after ``experiments/<name>`` was archived; loss and metric arguments are bound
    to their signatures.
    """
    import inspect

    import torch
    from basicsr.models import lr_scheduler
    from basicsr.models.base_model import BaseModel
    from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    problems = []
    train = opt.get('train') or {}
    model_cls = MODEL_REGISTRY.get(opt['model_type']) if opt.get('model_type') in MODEL_REGISTRY else None
    param = torch.nn.Parameter(torch.zeros(1))
    for key, value in train.items():
        if key.startswith('optim_') and isinstance(value, dict) and model_cls is not None:
            kwargs = dict(value)
            optim_type = kwargs.pop('type', None)
            problems.append(_call_problem(f'train:{key}', model_cls.get_optimizer, None, optim_type, [param],
                                          **kwargs))
    scheduler = train.get('scheduler')
    basicsr_schedulers = model_cls is not None and model_cls.setup_schedulers is BaseModel.setup_schedulers
    if isinstance(scheduler, dict) and basicsr_schedulers:
        kwargs = dict(scheduler)
        kind = kwargs.pop('type', None)
        multistep = lr_scheduler.MultiStepRestartLR
        classes = {'MultiStepLR': multistep, 'MultiStepRestartLR': multistep,
                   'CosineAnnealingRestartLR': lr_scheduler.CosineAnnealingRestartLR}
        if kind not in classes:
            problems.append(f"train:scheduler:type = '{kind}' is not one of BasicSR's schedulers: "
                            f"{', '.join(classes)}.")
        else:
            problems.append(_call_problem('train:scheduler', classes[kind], torch.optim.SGD([param], lr=0.1), **kwargs))
    for key, value in train.items():
        if key.endswith('_opt') and isinstance(value, dict) and value.get('type') in LOSS_REGISTRY:
            kwargs = {k: v for k, v in value.items() if k != 'type'}
            cls = LOSS_REGISTRY.get(value['type'])
            problems.append(_call_problem(f'train:{key}', inspect.signature(cls).bind, **kwargs))
    metrics = ((opt.get('val') or {}).get('metrics') or {})
    for name, value in metrics.items():
        if not isinstance(value, dict):
            continue
        kind = value.get('type')
        if kind not in METRIC_REGISTRY:
            choices = ', '.join(sorted(k for k in METRIC_REGISTRY.keys() if not k.endswith('_basicsr')))
            problems.append(f"val:metrics:{name}:type = '{kind}' is not registered. Valid choices: {choices}.")
            continue
        kwargs = {k: v for k, v in value.items() if k != 'type'}
        # BasicSR's calculate_metric passes the images by keyword: img=..., img2=...
        problems.append(_call_problem(f'val:metrics:{name}', inspect.signature(METRIC_REGISTRY.get(kind)).bind,
                                      img=None, img2=None, **kwargs))
    return [p for p in problems if p]


def _warn_stderr(message):
    import sys
    print(f'basicsr: warning: {message}', file=sys.stderr, flush=True)


def missing_weights(opt):
    """``path:pretrain_network_*`` files that do not exist, with the checkpoints found beside them."""
    import glob
    problems = []
    for key, value in sorted((opt.get('path') or {}).items()):
        if not key.startswith('pretrain_network') or not value or not isinstance(value, str):
            continue
        path = osp.expanduser(value)
        if osp.isfile(path):
            continue
        folder = osp.dirname(path) or '.'
        found = sorted(osp.basename(p) for p in glob.glob(osp.join(folder, '*.pth')))
        beside = (f" {folder} holds: {', '.join(found[:6])}{' ...' if len(found) > 6 else ''}." if found else
                  ' Train it first (basicsr train -opt <its train option file>) or set the path of downloaded '
                  'weights.')
        problems.append(f"path:{key} = '{value}' does not exist.{beside}")
    return problems


def check_args(argv, is_train=True, warn=_warn_stderr):
    """Pre-flight for ``basicsr train|test`` argv: option file, overrides, types, numbers and data paths.

    With ``is_train``, also the optimizers, scheduler, losses and metrics (:func:`check_training`).

    Returns:
        dict: The option file with the ``--force_yml`` overrides applied.
    """
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args(argv)
    opt = apply_force_yml(load_yaml(args.opt), args.force_yml, warn=warn)
    problems = check_registered_types(opt) + check_numbers(opt)
    if not problems and is_train:
        problems = check_training(opt)
    problems += missing_weights(opt) + missing_dataset_paths(opt)
    if len(problems) == 1:
        raise OptionError(f'{args.opt}: {problems[0]}')
    if problems:
        raise OptionError(f'{args.opt}:\n  ' + '\n  '.join(problems))
    return opt
