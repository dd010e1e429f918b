"""Model side of the training engine: a mixin over BasicSR's ``BaseModel`` hooks, no patching.

:class:`EngineModelMixin` overrides ``BaseModel`` methods through BasicSR's own extension point, a
model subclass:

* ``save_network`` / ``save_training_state`` write through
  :func:`~ecma_basicsr.engine.safe_save.atomic_save` (temporary file, fsync, rename); the training
  state also holds every rank's RNG states and the data-loader position
  (:mod:`~ecma_basicsr.engine.train_state`), plus whatever the model's ``extra_training_state()`` returns;
* ``resume_training`` restores them (and calls the model's ``load_extra_training_state(state)``);
* ``load_network`` is weights-only with clear errors (:func:`~ecma_basicsr.engine.checkpoint.safe_load`);
* ``validation`` runs with the RNG states preserved, so validating consumes nothing and a resumed
  run stays on the uninterrupted run's RNG streams; every validation result is also appended, one JSON
  object per line (``{"iter": N, "dataset": NAME, "psnr": ...}``), to ``metrics.jsonl`` in the
  experiment folder (``results/<name>/`` for ``basicsr test``), the machine-readable history that
  BasicSR otherwise keeps only in its text log and TensorBoard (read it with :func:`read_metric_history`);
* ``model_to_device`` builds DDP without ``device_ids`` on CPU (gloo).

:class:`~ecma_basicsr.models.ecma_model.ECMAModel` inherits it. For any other BasicSR model
(``model_type: SRModel`` ...), :func:`build_model` (installed into ``basicsr.train`` / ``basicsr.test`` by
:mod:`.patches`) builds the registered class with the mixin in front (:func:`engine_model_class`).
"""
import json
import os
from copy import deepcopy

import torch
from basicsr.utils.dist_util import master_only

from ecma_basicsr.engine.checkpoint import CheckpointError, flush_notes, safe_load, select_weights
from ecma_basicsr.engine.safe_save import atomic_save
from ecma_basicsr.engine.train_state import (
    _dist_info,
    active_sampler,
    gather_rng_states,
    preserved_rng,
    resume_data_position,
)

METRIC_HISTORY = 'metrics.jsonl'


def read_metric_history(folder):
    """The validations logged in ``folder/metrics.jsonl``: a list of dicts in the order they ran.

    A resumed run repeats the iterations after its checkpoint; the later entry of an iteration wins.
    """
    path = os.path.join(folder, METRIC_HISTORY)
    if not os.path.isfile(path):
        return []
    entries = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                entries[(entry['iter'], entry['dataset'])] = entry
    return sorted(entries.values(), key=lambda e: e['iter'])


class EngineModelMixin:
    """Exact resume and safe checkpoints for a BasicSR model; put it before the model class in the bases.

    Models may add entries to the training state by defining ``extra_training_state()`` (returning a
    dict) and ``load_extra_training_state(state)``.
    """

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BaseModel.save_network written atomically (rank 0 only, as in BasicSR)."""
        from basicsr.utils import get_root_logger

        if current_iter == -1:
            current_iter = 'latest'
        save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{current_iter}.pth')
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'save_network got {len(nets)} networks but {len(keys)} param keys.')
        save_dict = {}
        for net_, key in zip(nets, keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state_dict.items()}
        atomic_save(save_dict, save_path, logger=get_root_logger())

    def save_training_state(self, epoch, current_iter):
        """BaseModel.save_training_state plus RNG states of all ranks and the loader position.

        Called on every rank (gathering the RNG states is collective); rank 0 writes the file.
        """
        from basicsr.utils import get_root_logger

        if current_iter == -1:
            return
        rng = gather_rng_states()
        if _dist_info()[0] != 0:
            return
        state = {'epoch': epoch, 'iter': current_iter,
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers],
                 'rng': rng}
        sampler = active_sampler()
        if sampler is not None:
            state['loop'] = sampler.state_dict()
        extra = getattr(self, 'extra_training_state', None)
        if extra is not None:
            state.update(extra())
        save_path = os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')
        atomic_save(state, save_path, logger=get_root_logger())

    def resume_training(self, resume_state):
        """BaseModel.resume_training, then the model's extra state, the RNG states and the data position."""
        from basicsr.utils import get_root_logger
        logger = get_root_logger()
        flush_notes(logger)
        super().resume_training(resume_state)
        load_extra = getattr(self, 'load_extra_training_state', None)
        if load_extra is not None:
            load_extra(resume_state)
        resume_data_position(resume_state, logger)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """BaseModel.load_network with weights-only loading and a clear error for a missing key."""
        from basicsr.utils import get_root_logger

        logger = get_root_logger()
        net = self.get_bare_model(net)
        load_net, found = select_weights(safe_load(load_path, map_location='cpu'), param_key, load_path)
        if found != param_key:
            logger.info(f"Loading: '{load_path}' has no '{param_key}' entry; using "
                        f"{repr(found) if found else 'the file itself (a bare state dict)'}.")
        param_key = found
        logger.info(f'Loading {net.__class__.__name__} model from {load_path}, with param key: [{param_key}].')
        for k, v in deepcopy(load_net).items():
            if k.startswith('module.'):
                load_net[k[7:]] = v
                load_net.pop(k)
        if hasattr(net, 'map_checkpoint'):  # the authors' key layout, mapped before keys are compared
            load_net = net.map_checkpoint(load_net)
        self._print_different_keys_loading(net, load_net, strict)
        try:
            net.load_state_dict(load_net, strict=strict)
        except RuntimeError as err:  # CheckpointMismatchError, or torch's own for other networks
            if 'does not fit' not in str(err) and 'Error(s) in loading state_dict' not in str(err):
                raise
            detail, shown = [], 0
            for line in str(err).splitlines():  # one line: each category with its first two keys
                if line.startswith('    '):
                    shown += 1
                    if shown > 2 or line.strip().startswith('...'):
                        continue
                else:
                    shown = 0
                detail.append(line.strip())
            detail = ' '.join(d for d in detail if d)
            raise CheckpointError(f"'{load_path}' does not fit {net.__class__.__name__} as configured: {detail}") \
                from None

    def validation(self, *args, **kwargs):
        """BaseModel.validation with the global RNG states put back afterwards."""
        with preserved_rng():
            return super().validation(*args, **kwargs)

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        """The model's own logging of a validation, plus one line in ``metrics.jsonl`` (module docstring)."""
        super()._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        self._append_metric_history(current_iter, dataset_name)

    @master_only
    def _append_metric_history(self, current_iter, dataset_name):
        paths = self.opt['path']
        root = paths.get('experiments_root') if self.opt.get('is_train') else paths.get('results_root')
        if not root:
            return
        entry = {'iter': current_iter, 'dataset': dataset_name}
        entry.update({k: float(v) for k, v in self.metric_results.items()})
        with open(os.path.join(root, METRIC_HISTORY), 'a') as f:
            f.write(json.dumps(entry) + '\n')

    def model_to_device(self, net):
        """BaseModel.model_to_device; DDP gets ``device_ids`` only on a GPU (gloo runs on CPU)."""
        from torch.nn.parallel import DataParallel, DistributedDataParallel
        net = net.to(self.device)
        if self.opt['dist']:
            find_unused = self.opt.get('find_unused_parameters', False)
            ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused)
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net


_ENGINE_CLASSES = {}  # BasicSR model class -> its subclass with the mixin


def engine_model_class(cls):
    """``cls`` itself when it has :class:`EngineModelMixin`, else a subclass ``(EngineModelMixin, cls)``.

    The subclass keeps the name (BasicSR logs ``Model [SRModel] is created.``) and is made once per class.
    """
    if issubclass(cls, EngineModelMixin):
        return cls
    if cls not in _ENGINE_CLASSES:
        _ENGINE_CLASSES[cls] = type(cls.__name__, (EngineModelMixin, cls), {
            '__module__': __name__,
            '__doc__': f'{cls.__module__}.{cls.__qualname__} with exact resume and safe checkpoints '
                       f'({__name__}.EngineModelMixin).'})
    return _ENGINE_CLASSES[cls]


def build_model(opt):
    """``basicsr.models.build_model`` building the model class through :func:`engine_model_class`."""
    from basicsr.utils import get_root_logger
    from basicsr.utils.registry import MODEL_REGISTRY

    opt = deepcopy(opt)
    model = engine_model_class(MODEL_REGISTRY.get(opt['model_type']))(opt)
    get_root_logger().info(f'Model [{model.__class__.__name__}] is created.')
    return model

