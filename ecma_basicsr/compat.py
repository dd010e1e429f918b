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
   cannot resume on a CPU. We replace it with a device-aware version.
4. ``init_dist`` / ``BaseModel.model_to_device`` assume CUDA + NCCL. We pick gloo when no GPU
   is present, read ``LOCAL_RANK`` from the launcher and build DDP without ``device_ids``
   on CPU.
5. ``torch.distributed.run`` may pass ``--local-rank=N`` while BasicSR's parser only knows
   ``--local_rank``; :func:`normalize_argv` rewrites it (the CLI calls it).
6. A registry miss (``type: ECMAX``) raises a KeyError without the valid names; ours lists them.
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


def default_backend():
    """NCCL when CUDA is usable, gloo otherwise (CPU-only machines and CPU tests)."""
    import torch
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def _patch_dist():
    import torch
    import torch.distributed as dist
    from basicsr.utils import dist_util
    from basicsr.utils import options as options_mod

    def init_dist(launcher, backend=None, **kwargs):
        backend = backend or default_backend()
        if launcher == 'pytorch':
            local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        elif launcher == 'slurm':
            local_rank = _slurm_env(kwargs.pop('port', None))
        else:
            raise ValueError(f"Invalid launcher '{launcher}'; choose one of: none, pytorch, slurm.")
        if backend == 'nccl':
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, **kwargs)

    dist_util.init_dist = init_dist
    options_mod.init_dist = init_dist


def _slurm_env(port):
    """Fill torch.distributed's environment from SLURM's; returns the local rank."""
    import subprocess
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    local_rank = int(os.environ.get('SLURM_LOCALID', 0))
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
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
    from ecma_basicsr.utils import checkpoint

    def load_resume_state(opt):
        return checkpoint.load_resume_state(opt, map_location=resume_map_location(opt))

    train_mod.load_resume_state = load_resume_state


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
    _patch_model_to_device()
    _patch_resume()
    _patch_registry_errors()
    _APPLIED = True
