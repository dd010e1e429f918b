"""Installing the training engine into BasicSR's pipelines: recorded, reversible patches.

``basicsr train`` / ``basicsr test`` call :func:`installed` around ``basicsr.train.train_pipeline`` /
``basicsr.test.test_pipeline`` (the way HAT's ``hat/train.py`` composes BasicSR's pipeline); importing
the plugin installs nothing. Each :class:`Patch` records the original it replaces, applies at most
once and can be undone; :func:`uninstall` restores every original.

What is patched, and why a subclass does not suffice there: BasicSR's pipeline functions look these
names up in their own modules, so they are the only way in.

* ``basicsr.utils.options.init_dist`` (called by ``parse_options``): :func:`.dist.init_dist`, NCCL
  or gloo, ``dist_params`` for both launchers.
* ``basicsr.train.load_resume_state``: device-aware (CPU) resume that falls back past truncated or
  refused checkpoints (:func:`.checkpoint.pipeline_load_resume_state`).
* ``basicsr.train.create_train_val_dataloader``: the resumable, seed-ordered training data and the
  global-batch statistics (:func:`.train_state.create_train_val_dataloader`).
* ``basicsr.train.CPUPrefetcher`` / ``CUDAPrefetcher``: subclasses that count the batches handed out.
* ``basicsr.train.build_model`` / ``basicsr.test.build_model``: models get the
  :class:`~.model.EngineModelMixin` (atomic checkpoints, RNG states, weights-only loading, CPU DDP) by
  subclassing; ``ECMAModel`` already has it.
* ``basicsr.utils.registry.Registry.get``: a miss lists the valid names.
* ``basicsr.utils.file_client.LmdbBackend.__init__``, ``FileClient.get`` and every module's bound
  ``imfrombytes``: a truncated LMDB or an undecodable image stops the run with one line naming the
  file (:mod:`.data_checks`) instead of a SIGBUS or an ``AttributeError`` on ``None``.
* ``basicsr.utils.misc.mkdir_and_rename`` / ``basicsr.train.mkdir_and_rename``: archiving the previous
  run is shown and recorded so that a run failing before its first checkpoint can put it back
  (:mod:`.experiment_dirs`).
* ``basicsr.utils.options.ordered_yaml`` / ``_postprocess_yml_value``: ``1e-4`` is a number in option
  files and ``--force_yml`` (YAML 1.2 floats, :mod:`.yaml_values`).
"""
import contextlib
import importlib

from ecma_basicsr.engine import checkpoint, data_checks, dist, experiment_dirs, model, train_state, yaml_values


class Patch:
    """One attribute of a BasicSR module or class replaced while the engine is installed.

    Args:
        target (str): ``'module'`` or ``'module:Class'`` that owns the attribute.
        name (str): The attribute.
        make (callable): ``make(original) -> replacement``.
        why (str): What the replacement adds.
    """

    def __init__(self, target, name, make, why):
        self.target, self.name, self.make, self.why = target, name, make, why
        self.original = self.replacement = None

    def owner(self):
        module, _, cls = self.target.partition(':')
        owner = importlib.import_module(module)
        return getattr(owner, cls) if cls else owner

    @property
    def active(self):
        return self.replacement is not None and vars(self.owner()).get(self.name) is self.replacement

    def apply(self):
        """Replace the attribute (recording the original); a no-op when already applied. Returns True if applied."""
        if self.active:
            return False
        owner = self.owner()
        self.original = vars(owner)[self.name]
        self.replacement = self.make(self.original)
        setattr(owner, self.name, self.replacement)
        return True

    def undo(self):
        """Put the original back; a no-op when not applied. Returns True if undone.

        Raises:
            RuntimeError: something replaced the attribute again after us; restoring the original
                would silently drop that change.
        """
        if self.replacement is None:
            return False
        owner = self.owner()
        if vars(owner).get(self.name) is not self.replacement:
            raise RuntimeError(f'{self.target}.{self.name} was replaced again after the engine patched it; '
                               f'undo that change first.')
        setattr(owner, self.name, self.original)
        self.original = self.replacement = None
        return True

    def __repr__(self):
        return f"Patch({self.target}.{self.name}, {'active' if self.active else 'inactive'})"


def _registry_get(original):
    def get(self, name, suffix='basicsr'):
        """``Registry.get``; a miss names the valid choices."""
        try:
            return original(self, name, suffix)
        except KeyError:
            choices = ', '.join(sorted(k for k in self.keys() if not k.endswith('_basicsr')))
            raise KeyError(f"No {getattr(self, '_name', 'object')} named '{name}'. Valid choices: {choices}.") \
                from None

    return get


PATCHES = (
    Patch('basicsr.utils.options', 'init_dist', lambda original: dist.init_dist,
          'NCCL with GPUs, gloo without; dist_params for torchrun and slurm'),
    Patch('basicsr.train', 'load_resume_state', lambda original: checkpoint.pipeline_load_resume_state,
          'resume on CPU or GPU, weights-only, falling back past damaged checkpoints'),
    Patch('basicsr.train', 'create_train_val_dataloader', lambda original: train_state.create_train_val_dataloader,
          'seed-ordered, resumable training data; the global batch in the log'),
    Patch('basicsr.train', 'CPUPrefetcher', train_state.counting_prefetcher, 'counts the batches handed out'),
    Patch('basicsr.train', 'CUDAPrefetcher', train_state.counting_prefetcher, 'counts the batches handed out'),
    Patch('basicsr.train', 'build_model', lambda original: model.build_model,
          'models with atomic checkpoints, RNG states, weights-only loading'),
    Patch('basicsr.test', 'build_model', lambda original: model.build_model, 'models with weights-only loading'),
    Patch('basicsr.utils.registry:Registry', 'get', _registry_get, 'a registry miss lists the valid names'),
    Patch('basicsr.utils.file_client:LmdbBackend', '__init__', data_checks.lmdb_backend_init,
          'a truncated LMDB is refused before it is memory-mapped (no SIGBUS)'),
    Patch('basicsr.utils.file_client:FileClient', 'get', data_checks.file_client_get,
          'remembers which file was read, for the decode error'),
    *[Patch(module, 'imfrombytes', data_checks.imfrombytes, 'an undecodable image names its file')
      for module in data_checks.IMFROMBYTES_MODULES],
    *[Patch(module, 'mkdir_and_rename', experiment_dirs.mkdir_and_rename,
            'archiving the previous run is recorded, shown and undone when the new run fails early')
      for module in ('basicsr.utils.misc', 'basicsr.train')],
    Patch('basicsr.utils.options', 'ordered_yaml', yaml_values.ordered_yaml,
          'option files read 1e-4 as a number (YAML 1.2 floats)'),
    Patch('basicsr.utils.options', '_postprocess_yml_value', yaml_values.postprocess_yml_value,
          '--force_yml reads 1e-4 and 2.0e-4 as numbers'),
)


def install():
    """Apply every patch not yet applied; returns the patches this call applied."""
    return [patch for patch in PATCHES if patch.apply()]


def uninstall():
    """Undo every applied patch (in reverse order); returns the patches undone."""
    return [patch for patch in reversed(PATCHES) if patch.undo()]


def is_installed():
    """True when every patch is applied."""
    return all(patch.active for patch in PATCHES)


@contextlib.contextmanager
def installed():
    """Run a block with the engine installed; uninstall afterwards what this block installed."""
    applied = install()
    try:
        yield
    finally:
        for patch in reversed(applied):
            patch.undo()

