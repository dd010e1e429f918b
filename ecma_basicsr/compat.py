"""Compatibility layer between the PyPI ``basicsr==1.4.2`` and current torch / torchvision.

It must run before anything from ``basicsr`` is imported; ``ecma_basicsr/__init__.py`` imports
it first. Every patch is applied at runtime; site-packages is never edited. What it fixes:

1. ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17, but
   ``basicsr.data.degradations`` imports ``rgb_to_grayscale`` from it, so ``import basicsr``
   fails. We register an alias module that points at ``torchvision.transforms.functional``.
2. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. Model files load fine,
   but BasicSR's training states hold ``collections.Counter`` (MultiStepRestartLR milestones).
   We allow-list exactly the plain containers BasicSR writes instead of turning the safe
   loader off, so untrusted checkpoints are still never unpickled with arbitrary code.
3. ``basicsr.train.load_resume_state`` maps the state to ``torch.cuda.current_device()`` and
   cannot resume on a CPU. We replace it with a device-aware version that falls back past
   truncated or refused checkpoints (:mod:`ecma_basicsr.engine.checkpoint`).
4. ``init_dist`` / ``BaseModel.model_to_device`` assume CUDA + NCCL. We pick NCCL with CUDA and
   gloo without (``dist_params: backend`` overrides; ``nccl`` without a GPU falls back to gloo
   with a warning), read ``LOCAL_RANK`` / ``SLURM_LOCALID`` for the GPU, and build DDP without
   ``device_ids`` on CPU. BasicSR passes ``dist_params`` only to slurm; :func:`_patch_parse_options`
   hands them (and ``--force_yml dist_params:...``) to ``--launcher pytorch`` as well.
5. ``torch.distributed.run`` may pass ``--local-rank=N`` while BasicSR's parser only knows
   ``--local_rank``; :func:`normalize_argv` rewrites it (the CLI calls it). Under torchrun the
   environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) is all that is needed.
6. A registry miss (``type: ECMAX``) raises a KeyError without the valid names; ours lists them.
7. Exact resume and safe checkpoints (:mod:`ecma_basicsr.engine.train_state`): seed-ordered,
   resumable training data, RNG states and loader position in the ``.state``, atomic writes,
   weights-only model loading, the global batch in the log.
"""
import collections
import importlib
import os
import sys
import types

_APPLIED = False


def _alias_functional_tensor():
    try:
        importlib.import_module('torchvision.transforms.functional_tensor')
        return
    except ImportError:
        pass
    from torchvision.transforms import functional
    alias = types.ModuleType('torchvision.transforms.functional_tensor')
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules['torchvision.transforms.functional_tensor'] = alias


def _allow_basicsr_state_types():
    import torch
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add([collections.Counter, collections.OrderedDict, collections.defaultdict])


def normalize_argv(argv):
    """Rewrite launcher flags BasicSR's argparse does not know (``--local-rank``)."""
    out = []
    for arg in argv:
        if arg.startswith('--local-rank'):
            arg = '--local_rank' + arg[len('--local-rank'):]
        out.append(arg)
    return out


DIST_PARAM_KEYS = ('backend', 'port', 'timeout')
BACKENDS = ('auto', 'nccl', 'gloo', 'mpi', 'ucc')
_OPTION_DIST_PARAMS = {}  # dist_params of the option file being parsed (see _patch_parse_options)


def default_backend():
    """NCCL when CUDA is usable, gloo otherwise (CPU-only machines and CPU tests)."""
    import torch
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def resolve_dist_params(params):
    """Check ``dist_params`` and fill in the backend.

    Args:
        params (dict): ``backend`` ('auto'/None: NCCL with CUDA, else gloo), ``port`` (slurm:
            MASTER_PORT), ``timeout`` (seconds a collective may wait, e.g. for rank 0's validation).

    Returns:
        dict: ``backend`` (str), ``port`` (int | None), ``timeout`` (timedelta | None).
    """
    import datetime

    import torch
    unknown = sorted(set(params) - set(DIST_PARAM_KEYS))
    if unknown:
        raise ValueError(f"Unknown dist_params key(s) {unknown}; valid keys: {', '.join(DIST_PARAM_KEYS)}.")
    backend = params.get('backend') or 'auto'
    if backend not in BACKENDS:
        raise ValueError(f"dist_params:backend '{backend}' is not one of {', '.join(BACKENDS)}.")
    if backend == 'auto':
        backend = default_backend()
    elif backend == 'nccl' and not torch.cuda.is_available():
        print('WARNING: dist_params:backend is nccl but no CUDA GPU is visible; using gloo (set backend: gloo or '
              'auto to silence this).', file=sys.stderr, flush=True)
        backend = 'gloo'
    timeout = params.get('timeout')
    if timeout is not None:
        timeout = datetime.timedelta(seconds=float(timeout))
    port = params.get('port')
    return {'backend': backend, 'port': int(port) if port is not None else None, 'timeout': timeout}


def read_dist_params(argv):
    """``dist_params`` of the option file named by ``-opt`` in ``argv`` (with ``--force_yml`` edits)."""
    import yaml
    opt_file, forced, i = None, [], 0
    while i < len(argv):
        if argv[i] == '-opt' and i + 1 < len(argv):
            opt_file = argv[i + 1]
        elif argv[i] == '--force_yml':
            j = i + 1
            while j < len(argv) and not argv[j].startswith('--'):
                forced.append(argv[j])
                j += 1
        i += 1
    params = {}
    if opt_file and os.path.isfile(opt_file):
        with open(opt_file) as f:
            params = dict((yaml.safe_load(f) or {}).get('dist_params') or {})
    for entry in forced:
        key, _, value = entry.partition('=')
        parts = key.strip().split(':')
        if len(parts) == 2 and parts[0] == 'dist_params':
            params[parts[1]] = yaml.safe_load(value.strip())
    return params


def _launcher_env_error(names, launcher):
    hint = ('start it with torchrun, e.g. torchrun --nproc_per_node=2 -m ecma_basicsr.cli train -opt <file> '
            '--launcher pytorch' if launcher == 'pytorch' else 'start it with srun inside a slurm allocation')
    return RuntimeError(f"--launcher {launcher} needs the environment variable(s) {', '.join(names)}, which are not "
                        f'set: {hint}.')


def _patch_dist():
    import torch
    import torch.distributed as dist
    from basicsr.utils import dist_util
    from basicsr.utils import options as options_mod

    def init_dist(launcher, backend=None, **kwargs):
        """BasicSR's ``init_dist`` for GPUs and CPUs; option-file ``dist_params`` apply to both launchers."""
        params = dict(_OPTION_DIST_PARAMS)
        params.update({k: v for k, v in kwargs.items() if v is not None})
        if backend is not None:
            params['backend'] = backend
        params = resolve_dist_params(params)
        if launcher == 'pytorch':
            missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
            if missing:
                raise _launcher_env_error(missing, launcher)
            local_rank = int(os.environ.get('LOCAL_RANK', 0))
        elif launcher == 'slurm':
            missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS') if k not in os.environ]
            if missing:
                raise _launcher_env_error(missing, launcher)
            local_rank = _slurm_env(params['port'])
        else:
            raise ValueError(f"Invalid launcher '{launcher}'; choose one of: none, pytorch, slurm.")
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        if not dist.is_initialized():
            extra = {'timeout': params['timeout']} if params['timeout'] is not None else {}
            dist.init_process_group(backend=params['backend'], **extra)

    dist_util.init_dist = init_dist
    options_mod.init_dist = init_dist


def _patch_parse_options():
    """Make ``dist_params`` (backend included) reach ``init_dist`` for ``--launcher pytorch`` too.

    BasicSR's ``parse_options`` passes them for slurm only, and applies ``--force_yml`` after
    initialising the process group; we read them from the command line's option file first.
    """
    from basicsr import test as test_mod
    from basicsr import train as train_mod
    from basicsr.utils import options as options_mod

    original = options_mod.parse_options

    def parse_options(root_path, is_train=True):
        _OPTION_DIST_PARAMS.clear()
        _OPTION_DIST_PARAMS.update(read_dist_params(sys.argv[1:]))
        return original(root_path, is_train)

    parse_options.__doc__ = original.__doc__
    options_mod.parse_options = train_mod.parse_options = test_mod.parse_options = parse_options


def _slurm_env(port):
    """Fill torch.distributed's environment from SLURM's; returns the local rank."""
    import shutil
    import subprocess
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    local_rank = int(os.environ.get('SLURM_LOCALID', 0))
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ.get('SLURM_JOB_NODELIST') or os.environ.get('SLURM_NODELIST')
        if not node_list or shutil.which('scontrol') is None:
            raise _launcher_env_error(['MASTER_ADDR (or SLURM_NODELIST with scontrol on PATH)'], 'slurm')
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = str(local_rank)
    return local_rank


def _patch_model_to_device():
    import torch
    from torch.nn.parallel import DataParallel, DistributedDataParallel
    from basicsr.models.base_model import BaseModel

    def model_to_device(self, net):
        net = net.to(self.device)
        if self.opt['dist']:
            find_unused = self.opt.get('find_unused_parameters', False)
            ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused)
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net

    BaseModel.model_to_device = model_to_device


def resume_map_location(opt):
    """Where a resume state should be mapped: the model's device (CPU when num_gpu is 0)."""
    import torch
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def _patch_resume():
    from basicsr import train as train_mod
    from ecma_basicsr.engine import checkpoint

    def load_resume_state(opt):
        return checkpoint.load_resume_state(opt, map_location=resume_map_location(opt))

    train_mod.load_resume_state = load_resume_state


def _patch_training_state():
    from ecma_basicsr.engine import train_state
    train_state.install()


def _patch_registry_errors():
    from basicsr.utils.registry import Registry

    original_get = Registry.get

    def get(self, name, suffix='basicsr'):
        try:
            return original_get(self, name, suffix)
        except KeyError:
            choices = ', '.join(sorted(k for k in self._obj_map if not k.endswith('_basicsr')))
            raise KeyError(f"No {self._name} named '{name}'. Valid choices: {choices}.") from None

    Registry.get = get


def apply():
    """Apply all patches once; safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    _alias_functional_tensor()
    _allow_basicsr_state_types()
    import basicsr  # noqa: F401  (import only after the alias exists)
    _patch_dist()
    _patch_parse_options()
    _patch_model_to_device()
    _patch_resume()
    _patch_training_state()
    _patch_registry_errors()
    _APPLIED = True
