"""Exact resume for BasicSR training: data position, RNG streams and the global batch.

BasicSR 1.4.2 resumes the optimizer and scheduler but restarts the interrupted epoch from its
first batch and keeps neither RNG states nor the loader position, so a resumed run drifts away
from the run it replaces. This module holds the data side of exact resume; :mod:`.patches` puts
:func:`create_train_val_dataloader` and the counting prefetchers (:func:`counting_prefetcher`) into
``basicsr.train``, and :class:`~ecma_basicsr.engine.model.EngineModelMixin` saves and restores the states:

* **Data order from the seed.** :class:`ResumableSampler` replaces ``EnlargedSampler``: the
  permutation of an epoch comes from ``(manual_seed, epoch)`` and is the same on every rank
  (rank ``r`` of ``W`` takes global positions ``r, r + W, ...``). It records how many global
  positions the finished iterations consumed and, on resume, skips exactly those.
* **Augmentation from the sample's position.** :class:`SeededSamples` wraps the training set and
  runs ``dataset[i]`` with python/numpy/torch RNGs seeded from ``(manual_seed, epoch, position)``,
  then restores the caller's RNGs. Random crops and flips therefore depend neither on the rank,
  the world size, the number of loader workers nor on where a run was interrupted. The global
  batch of iteration ``t`` is the same for 1 process with batch ``B * W`` and ``W`` processes
  with batch ``B``. (Exception: with ``prefetch_mode: cpu`` and ``num_worker_per_gpu: 0`` the
  dataset runs in BasicSR's prefetch thread, concurrently with the model's own RNG use.)
* **RNG states.** The model's ``save_training_state`` gathers each rank's torch/CUDA/numpy/python
  RNG state (:func:`gather_rng_states`) into the ``.state`` file (``rng``: one entry per rank) plus
  the loader position (``loop``). On resume (:func:`resume_data_position`) the sampler restores them
  at the moment the resumed epoch draws its first sample, which is the same point of the RNG
  streams at which the interrupted run saved (validation runs with the RNG states preserved, so it
  consumes nothing).
* **Global batch.** The training statistics in the log state the batch per process, the number
  of processes and their product, the global batch, and warn once when the product differs from
  the option file's ``recipe: global_batch_size`` (:func:`recipe_batch_warning`).
"""
import contextlib
import math
import random
import weakref

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_ACTIVE = {'sampler': None}  # weak reference to the training sampler of the running pipeline


# ----------------------------------------------------------------------------- RNG states
def capture_rng():
    """This process's global RNG states as plain data (loadable weights-only).

    Returns:
        dict: ``torch`` (ByteTensor), ``cuda`` (ByteTensor of the current device or None),
        ``numpy`` (tuple with an int64 key tensor) and ``python`` (tuple of ints).
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
    return {
        'torch': torch.get_rng_state(),
        'cuda': cuda,
        'numpy': (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        'python': (version, tuple(internal), gauss_next),
    }


def restore_rng(state):
    """Set the global RNGs from :func:`capture_rng` output."""
    torch.set_rng_state(state['torch'].cpu())
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'].cpu())
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))


@contextlib.contextmanager
def preserved_rng():
    """Run a block and put the global torch (CPU, CUDA), numpy and python RNGs back afterwards."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def _dist_info():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rng_states():
    """Every rank's :func:`capture_rng` (a collective call when distributed), indexed by rank."""
    import torch.distributed as dist
    world = _dist_info()[1]
    mine = capture_rng()
    if world == 1:
        return [mine]
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    return gathered


def sample_seed(seed, epoch, position):
    """32-bit seed of the sample at global ``position`` of ``epoch`` (independent of rank/world)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(position)]).generate_state(1)[0])


def epoch_permutation(seed, epoch, size):
    """The epoch's shuffled order of ``range(size)``, the same on every rank."""
    gen = torch.Generator()
    gen.manual_seed(int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(1)[0]))
    return torch.randperm(size, generator=gen).tolist()


class SeededSamples(Dataset):
    """Training-set wrapper: ``self[(index, seed)]`` is ``dataset[index]`` under seeded RNGs.

    The global python, numpy and torch (CPU) RNGs are seeded with ``seed`` for the call and
    restored afterwards, so data augmentation is a function of the sample's seed only and data
    loading consumes nothing from the training process's RNG streams. Plain integer indices
    are passed through unchanged. Other attributes are the wrapped dataset's.

    Args:
        dataset (Dataset): A BasicSR training dataset.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        if name == 'dataset':  # during unpickling in loader workers
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, seed = item
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


class ResumableSampler(Sampler):
    """Distributed, seed-ordered sampler that knows its position and can resume mid-epoch.

    Same partition as BasicSR's ``EnlargedSampler`` (``ceil(len * ratio / W)`` samples per
    rank, indices modulo the dataset length), but the order comes from ``(seed, epoch)`` and
    each item is ``(index, sample_seed)`` for :class:`SeededSamples`.

    Args:
        dataset (Dataset): The (wrapped) training set.
        num_replicas (int): World size W.
        rank (int): This process's rank.
        ratio (int): BasicSR's ``dataset_enlarge_ratio``.
        seed (int): ``manual_seed`` (the same on every rank).
    """

    def __init__(self, dataset, num_replicas, rank, ratio=1, seed=0):
        if len(dataset) == 0:
            raise ValueError('The training dataset is empty; check datasets:train dataroot_* paths.')
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.ratio = ratio
        self.seed = int(seed)
        self.epoch = 0
        self.num_samples = math.ceil(len(dataset) * ratio / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.position = 0  # global positions of the current epoch consumed by finished iterations
        self._resume = None

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        self.epoch = epoch
        pending = self._resume
        if pending is not None and pending['epoch'] == epoch:
            pending['armed'] = True  # the next pass over this epoch is the resumed one
            self.position = pending['position']
        else:
            self.position = 0

    def note_batch(self, batch_size):
        """Called once per batch handed to the training loop (``batch_size`` per process)."""
        self.position += batch_size * self.num_replicas

    def state_dict(self):
        return {'epoch': self.epoch, 'position': self.position, 'total_size': self.total_size,
                'seed': self.seed, 'world_size': self.num_replicas}

    def resume(self, epoch, position, rng=None):
        """Skip the first ``position`` global positions of ``epoch`` and restore ``rng`` there.

        Takes effect on the first pass after ``set_epoch(epoch)``: the training loop calls it
        before the resumed epoch, while a loader built earlier (BasicSR's prefetcher makes one,
        and worker processes prefetch indices at once) must not consume the resume.
        """
        self._resume = {'epoch': int(epoch), 'position': min(int(position), self.total_size), 'rng': rng,
                        'armed': False}

    def __iter__(self):
        start = 0
        pending = self._resume
        if pending is not None and pending['armed'] and pending['epoch'] == self.epoch:
            self._resume = None
            if pending['rng'] is not None:
                restore_rng(pending['rng'])
            start = pending['position']
        order = epoch_permutation(self.seed, self.epoch, self.total_size)
        size, world = len(self.dataset), self.num_replicas
        first = self.rank if start <= self.rank else self.rank + world * math.ceil((start - self.rank) / world)
        for position in range(first, self.total_size, world):
            yield order[position] % size, sample_seed(self.seed, self.epoch, position)


def active_sampler():
    """The :class:`ResumableSampler` of the running training pipeline, or None."""
    ref = _ACTIVE['sampler']
    return ref() if ref is not None else None


def _note_batch(loader):
    sampler = getattr(loader, 'sampler', None)
    if isinstance(sampler, ResumableSampler):
        sampler.note_batch(loader.batch_size)


def counting_prefetcher(base):
    """``base`` (BasicSR's ``CPUPrefetcher`` or ``CUDAPrefetcher``) telling the sampler each batch handed out."""

    class Counting(base):
        def next(self):
            batch = super().next()
            if batch is not None:
                _note_batch(self.ori_loader)
            return batch

    Counting.__name__ = Counting.__qualname__ = f'Counting{base.__name__}'
    Counting.__doc__ = f'BasicSR\'s {base.__name__} that tells the training sampler each batch handed out.'
    return Counting


def recipe_batch_warning(recipe, per_process, world_size):
    """The warning for a global batch that differs from the option file's ``recipe``, or None.

    Args:
        recipe (dict | None): The option file's ``recipe`` (``global_batch_size``, ``num_processes``: the
            setting the learning rate and iteration count were chosen for).
        per_process (int): ``batch_size_per_gpu``.
        world_size (int): Number of processes.

    Returns:
        str | None: One line naming both global batches and the fix, or None when they agree (or no
        recipe states a global batch).
    """
    if recipe is not None and not isinstance(recipe, dict):
        raise ValueError(f'recipe must be a mapping like {{global_batch_size: 64, num_processes: 8}}, got {recipe!r}.')
    target = (recipe or {}).get('global_batch_size')
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f'recipe:global_batch_size must be a positive integer, got {target!r}.')
    actual = per_process * world_size
    if actual == target:
        return None
    procs = recipe.get('num_processes')
    fixes = []
    if target % world_size == 0:
        fixes.append(f'set datasets:train:batch_size_per_gpu: {target // world_size} for these {world_size} '
                     f'process(es)')
    if isinstance(procs, int) and procs > 0 and target % procs == 0:
        fixes.append(f'run {procs} processes with batch_size_per_gpu: {target // procs}')
    elif target % per_process == 0:
        fixes.append(f'run {target // per_process} processes')
    fix = ' or '.join(fixes) if fixes else f'choose batch_size_per_gpu x processes = {target}'
    setting = f' ({procs} processes x {target // procs})' if isinstance(procs, int) and procs > 0 and \
        target % procs == 0 else ''
    return (f'Global batch size {per_process} x {world_size} = {actual} differs from the recipe\'s {target}{setting}, '
            f'which the learning rate and iteration count were set for: {fix}.')


def shared_seed(opt):
    """``manual_seed``, made equal on all ranks (BasicSR draws one per rank when it is unset)."""
    import torch.distributed as dist
    seed = int(opt['manual_seed'])
    if opt.get('dist') and dist.is_available() and dist.is_initialized():
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = int(box[0])
    opt['manual_seed'] = seed
    return seed


def create_train_val_dataloader(opt, logger):
    """``basicsr.train.create_train_val_dataloader`` with the resumable, seeded training data.

    Also fixes the epoch count: with ``drop_last`` an epoch has ``floor(samples / batch)``
    iterations, where BasicSR's ``ceil`` could end the run short of ``total_iter``.

    Returns:
        tuple: ``(train_loader, train_sampler, val_loaders, total_epochs, total_iters)``.
    """
    from basicsr.data import build_dataloader, build_dataset

    train_loader = train_sampler = None
    val_loaders = []
    total_epochs = total_iters = None
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = SeededSamples(build_dataset(dataset_opt))
            train_sampler = ResumableSampler(train_set, opt['world_size'], opt['rank'], ratio, seed=shared_seed(opt))
            _ACTIVE['sampler'] = weakref.ref(train_sampler)
            train_loader = build_dataloader(train_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                            sampler=train_sampler, seed=opt['manual_seed'])
            per_process = train_loader.batch_size
            iters_per_epoch = len(train_loader)
            if iters_per_epoch == 0:
                raise ValueError(f'datasets:train has {len(train_sampler)} samples per process, fewer than one batch '
                                 f'({per_process}); lower batch_size_per_gpu or raise dataset_enlarge_ratio.')
            total_iters = int(opt['train']['total_iter'])
            total_epochs = math.ceil(total_iters / iters_per_epoch)
            logger.info('Training statistics:'
                        f'\n\tNumber of train images: {len(train_set)}'
                        f'\n\tDataset enlarge ratio: {ratio}'
                        f'\n\tBatch size per gpu: {per_process}'
                        f'\n\tWorld size (gpu number): {opt["world_size"]}'
                        f'\n\tGlobal batch size: {per_process} x {opt["world_size"]} = '
                        f'{per_process * opt["world_size"]}'
                        f'\n\tRequire iter number per epoch: {iters_per_epoch}'
                        f'\n\tTotal epochs: {total_epochs}; iters: {total_iters}.')
            warning = recipe_batch_warning(opt.get('recipe'), per_process, opt['world_size'])
            if warning is not None:
                logger.warning(warning)
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loader = build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                          sampler=None, seed=opt['manual_seed'])
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
            val_loaders.append(val_loader)
        else:
            raise ValueError(f"Dataset phase '{phase}' is not recognized; use train, val or val_<n>.")
    if train_loader is None:
        raise ValueError('The option file has no datasets:train entry; training needs one.')
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters


def resume_data_position(resume_state, logger):
    """Hand the saved loader position and this rank's RNG state to the active sampler."""
    sampler = active_sampler()
    if sampler is None:
        return
    loop = resume_state.get('loop')
    if loop is None:
        logger.warning('This training state has no data-loader position (written by plain BasicSR): the epoch '
                       'restarts from its first batch and RNG streams are not restored.')
        return
    rank, world = _dist_info()
    if loop['seed'] != sampler.seed:
        logger.info(f"Resume: data order continues with the saved seed {loop['seed']} (options: {sampler.seed}).")
        sampler.seed = loop['seed']
    if loop['total_size'] != sampler.total_size:
        logger.warning(f"Resume: an epoch now has {sampler.total_size} samples instead of {loop['total_size']} "
                       f'(dataset, enlarge ratio or world size changed); the rest of epoch {loop["epoch"]} starts at '
                       f"position {min(loop['position'], sampler.total_size)} of the new order.")
    rngs = resume_state.get('rng') or []
    rng = rngs[rank] if len(rngs) == world else None
    if rngs and rng is None:
        logger.warning(f'Resume: the state holds RNG states of {len(rngs)} processes, this run has {world}; model-side '
                       f'RNG streams restart from the seed (data order and augmentation still continue exactly).')
    sampler.resume(loop['epoch'], loop['position'], rng)
    logger.info(f"Resume: epoch {loop['epoch']} continues after {loop['position']} of {sampler.total_size} samples"
                f"{'; RNG states restored' if rng is not None else ''}.")
