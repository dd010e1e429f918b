"""Safe checkpoint loading and resume-state discovery with fallback past damaged checkpoints.

BasicSR writes ``experiments/<name>/training_states/<iter>.state`` plus the matching
``models/net_g_<iter>.pth`` and, on ``--auto_resume``, resumes from the largest ``<iter>``.
A resume point is only usable when both files load, so :func:`load_resume_state` tries the
newest first, checks the ``.state`` *and* every ``net_<x>_<iter>.pth`` that
``check_resume`` will point ``pretrain_network_<x>`` at, and falls back to an older pair when
one is truncated, corrupt or refused, saying which file was skipped and why.

Every load goes through :func:`safe_load`: ``torch.load(weights_only=True)`` whatever torch's
default is. :mod:`ecma_basicsr.import_hook` allow-lists the few plain containers BasicSR stores, so a file
that needs any other Python object (e.g. a crafted pickle whose ``__reduce__`` runs a command) is
refused with :class:`UnsafeCheckpointError` and nothing in it is executed.
"""
import os
import os.path as osp
import pickle
import sys

import torch

from ecma_basicsr.engine.safe_save import remove_stale_temps
from ecma_basicsr.errors import UserError

# Warnings produced before BasicSR's logger has its log file; replayed into the log by
# :func:`flush_notes` (calling get_root_logger earlier would stop it from ever adding the file).
_NOTES = []


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used; the message names the file, the cause and the fix."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that needs arbitrary Python objects to unpickle; it was not loaded."""


class CorruptCheckpointError(CheckpointError):
    """A truncated or otherwise unreadable checkpoint."""


def list_states(state_dir):
    """Return ``[(iter, path), ...]`` for ``*.state`` files in ``state_dir``, newest first."""
    if not osp.isdir(state_dir):
        return []
    found = []
    for name in os.listdir(state_dir):
        stem, ext = osp.splitext(name)
        if ext == '.state' and stem.isdigit():
            found.append((int(stem), osp.join(state_dir, name)))
    return sorted(found, reverse=True)


def _refused_global(message):
    for line in message.splitlines():
        if 'GLOBAL' in line or 'Unsupported global' in line or 'Unsupported operand' in line:
            return line.strip()
    return None


def safe_load(path, map_location='cpu'):
    """``torch.load`` with the weights-only unpickler, whatever torch's default is.

    Args:
        path (str): Checkpoint file.
        map_location: As in ``torch.load``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file needs Python objects beyond tensors and plain containers.
        CorruptCheckpointError: the file is truncated, empty or not a torch checkpoint.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_global(str(err))
        if refused is None:
            raise CorruptCheckpointError(f"Checkpoint '{path}' is not a readable torch checkpoint: "
                                         f'{str(err).splitlines()[0]}') from None
        raise UnsafeCheckpointError(
            f"Refused to load '{path}': it is not a plain weights file ({refused}). Checkpoints are loaded "
            f'weights-only, so code hidden in a pickle never runs. Use checkpoints from sources you trust; a '
            f'trusted file with extra objects can be re-saved as a plain state dict of tensors.') from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).splitlines()[0].split('. ')[0] if str(err) else type(err).__name__
        raise CorruptCheckpointError(f"Checkpoint '{path}' is truncated or corrupt ({first}). "
                                     f'It was probably cut short by a crash or an incomplete copy.') from None


WEIGHT_KEYS = ('params', 'params_ema', 'state_dict', 'model')  # where published files keep their weights


def select_weights(ckpt, param_key, path):
    """The state dict inside a loaded checkpoint file.

    ``param_key`` when the file has it; otherwise the first entry of :data:`WEIGHT_KEYS` it has
    (BasicSR's ``params`` / ``params_ema``, ``state_dict`` as in M3SNet's and Lightning files,
    ``model`` as in IRNeXt's), or the file itself when it is a bare state dict (IMDN's). A
    ``module.`` prefix is left for the loader.

    Args:
        ckpt: What :func:`safe_load` returned.
        param_key (str | None): The requested entry (``path:param_key_g``); None: a bare state dict.
        path (str): The file, for messages.

    Returns:
        tuple: (state dict, the entry used or None for a bare state dict).

    Raises:
        CheckpointError: not a dict, or no entry holds weights; the message lists the entries.
    """
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"'{path}' holds a {type(ckpt).__name__}, not a dict of weights.")
    if param_key is not None and isinstance(ckpt.get(param_key), dict):
        return ckpt[param_key], param_key
    found = next((k for k in WEIGHT_KEYS if isinstance(ckpt.get(k), dict)), None)
    if found is not None:
        return ckpt[found], found
    if ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return ckpt, None
    raise CheckpointError(f"'{path}' has no '{param_key}' entry and no weights under {', '.join(WEIGHT_KEYS)} "
                          f"(entries: {', '.join(map(str, sorted(ckpt, key=str)[:8]))}). Set path:param_key_g to the "
                          'entry that holds them, or ~ when the file is a bare state dict.')


def check_model_file(path):
    """Load a model file written by ``BaseModel.save_network`` and check its structure.

    Raises:
        CheckpointError (or FileNotFoundError): the file is missing, unreadable, or holds no
            ``params`` / ``params_ema`` dict of tensors.
    """
    net = safe_load(path)
    if not isinstance(net, dict):
        raise CorruptCheckpointError(f"Model file '{path}' holds a {type(net).__name__}, not a dict of weights.")
    keys = [k for k in ('params', 'params_ema') if isinstance(net.get(k), dict)]
    if not keys:
        raise CorruptCheckpointError(f"Model file '{path}' has no 'params' entry (found: {sorted(net)[:5]}).")
    for key in keys:
        bad = [k for k, v in net[key].items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CorruptCheckpointError(f"Model file '{path}' [{key}] has non-tensor entries: {bad[:3]}.")


def resume_model_paths(opt, resume_iter):
    """The ``net_<x>_<iter>.pth`` files BasicSR's ``check_resume`` will load for ``resume_iter``."""
    ignore = opt['path'].get('ignore_resume_networks') or []
    paths = []
    for network in sorted(k for k in opt if k.startswith('network_')):
        if network in ignore:
            continue
        paths.append(osp.join(opt['path']['models'], f"net_{network.replace('network_', '')}_{resume_iter}.pth"))
    return paths


def _check_state(state, path):
    if not isinstance(state, dict) or not all(k in state for k in ('iter', 'epoch', 'optimizers', 'schedulers')):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CorruptCheckpointError(f"Training state '{path}' lacks iter/epoch/optimizers/schedulers "
                                     f'(found {found}).')


def note(message, rank=0):
    """Print a resume warning now (stderr, rank 0) and keep it for the training log."""
    if rank == 0:
        print(f'WARNING: {message}', file=sys.stderr, flush=True)
    _NOTES.append(message)


def flush_notes(logger):
    """Write the warnings collected during resume discovery into ``logger`` (then forget them)."""
    while _NOTES:
        logger.warning(_NOTES.pop(0))


def load_resume_state(opt, map_location='cpu'):
    """BasicSR's ``load_resume_state``: device-aware, weights-only, falling back past bad checkpoints.

    With ``--auto_resume`` the newest ``<iter>.state`` whose state *and* model files load is
    used; skipped ones are reported. With ``path:resume_state`` that exact file is used and any
    problem is an error. Temporary files left by a writer killed mid-save are removed (rank 0).

    Args:
        opt (dict): Parsed options (``path``, ``name``, ``auto_resume``, ``network_*``, ``rank``).
        map_location: Where tensors of the state go.

    Returns:
        dict | None: The training state, or None when there is nothing to resume.

    Raises:
        CheckpointError: ``path:resume_state`` is unusable, or every state found is unusable.
    """
    from basicsr.utils.misc import check_resume

    _NOTES.clear()  # notes belong to this discovery only
    exp_root = opt['path'].get('experiments_root') or osp.join('experiments', opt['name'])
    state_dir = opt['path'].get('training_states') or osp.join(exp_root, 'training_states')
    opt['path'].setdefault('models', osp.join(exp_root, 'models'))
    if opt['auto_resume']:
        if opt.get('rank', 0) == 0:
            for folder in (state_dir, opt['path']['models']):
                for path in remove_stale_temps(folder):
                    note(f'Removed {path}, a checkpoint a killed process did not finish writing.')
        candidates = list_states(state_dir)
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
        if not osp.isfile(path):
            raise FileNotFoundError(f"path:resume_state points to '{path}', which does not exist.")
        candidates = [(None, path)]
    else:
        return None

    skipped = []
    for _, path in candidates:
        try:
            state = safe_load(path, map_location)
            _check_state(state, path)
            for model_path in resume_model_paths(opt, state['iter']):
                check_model_file(model_path)
        except (CheckpointError, FileNotFoundError) as err:
            if not opt['auto_resume']:
                raise CheckpointError(f"Cannot resume from '{path}': {err}") from None
            skipped.append(f'{path}: {err}')
            note(f'Skipping resume point {path}: {err}', opt.get('rank', 0))
            continue
        if skipped:
            note(f"Resuming from {path} (iteration {state['iter']}) instead of the newer, unusable "
                 f'checkpoint(s) listed above.', opt.get('rank', 0))
        opt['path']['resume_state'] = path
        check_resume(opt, state['iter'])
        return state
    if skipped:
        raise CheckpointError(
            f'--auto_resume found {len(skipped)} training state(s) in {state_dir}, none usable:\n  ' +
            '\n  '.join(skipped) + f"\nRestore a good checkpoint, set path:resume_state, or rename "
            f"{exp_root} to start training from scratch.")
    return None


def resume_map_location(opt):
    """Where a resume state should be mapped: the model's device (CPU when num_gpu is 0)."""
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def pipeline_load_resume_state(opt):
    """``basicsr.train.load_resume_state``: :func:`load_resume_state` onto the model's device.

    BasicSR's maps the state to ``torch.cuda.current_device()`` and so cannot resume on a CPU.
    """
    return load_resume_state(opt, map_location=resume_map_location(opt))
