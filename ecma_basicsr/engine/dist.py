"""Distributed launch for GPUs and CPUs: backend choice, ``dist_params`` for both launchers, clear errors.

BasicSR 1.4.2's ``init_dist`` assumes CUDA + NCCL (it divides by the GPU count), passes the option
file's ``dist_params`` to ``--launcher slurm`` only, and applies ``--force_yml`` after the process
group exists. :func:`init_dist` (installed by :mod:`.patches` as the ``init_dist`` that BasicSR's
``parse_options`` calls) picks NCCL with CUDA and gloo without (``dist_params: backend`` overrides;
``nccl`` without a GPU falls back to gloo with a warning), reads ``dist_params`` (with their
``--force_yml`` edits) from the command line for both launchers, sets the GPU from ``LOCAL_RANK`` /
``SLURM_LOCALID``, and names the launcher command when its environment is missing.

``torch.distributed.run`` may pass ``--local-rank=N`` while BasicSR's parser knows only
``--local_rank``: :func:`normalize_argv` rewrites it (the ``basicsr`` command calls it); under torchrun
the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) is all that is needed.
"""
import os
import sys

DIST_PARAM_KEYS = ('backend', 'port', 'timeout')
BACKENDS = ('auto', 'nccl', 'gloo', 'mpi', 'ucc')


def normalize_argv(argv):
    """Rewrite launcher flags BasicSR's argparse does not know (``--local-rank``)."""
    out = []
    for arg in argv:
        if arg.startswith('--local-rank'):
            arg = '--local_rank' + arg[len('--local-rank'):]
        out.append(arg)
    return out


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


def init_dist(launcher, backend=None, **kwargs):
    """BasicSR's ``init_dist`` for GPUs and CPUs; the option file's ``dist_params`` apply to both launchers.

    Like BasicSR's ``parse_options`` (its caller), it reads the command line (``sys.argv``): the
    ``dist_params`` of the ``-opt`` file with their ``--force_yml`` edits, which BasicSR would apply only
    after the process group exists. Keyword arguments (slurm: BasicSR passes ``dist_params``) and
    ``backend`` take precedence.

    Args:
        launcher (str): ``pytorch`` (torchrun's environment) or ``slurm`` (srun's).
        backend (str | None): Process-group backend; None: ``dist_params:backend`` or the default.
    """
    import torch
    import torch.distributed as dist
    params = read_dist_params(sys.argv[1:])
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
