"""The training engine that ``basicsr train`` / ``basicsr test`` install around BasicSR's pipelines.

Importing it changes nothing; :func:`install` / :func:`installed` apply the recorded, reversible
patches of :mod:`.patches` and :func:`uninstall` removes them. Modules:

* :mod:`.patches`: what is installed into ``basicsr.train`` / ``basicsr.test`` and why;
* :mod:`.model`: :class:`~.model.EngineModelMixin`, the model-side behaviour by subclassing
  (atomic checkpoints, RNG states in the training state, weights-only loading, CPU DDP);
* :mod:`.train_state`: exact resume of the data (seed-ordered resumable sampler, per-sample seeds,
  RNG capture) and the global-batch statistics;
* :mod:`.checkpoint`: weights-only loading and resume-point discovery falling back past damaged files;
* :mod:`.safe_save`: atomic checkpoint writes;
* :mod:`.dist`: NCCL/gloo process groups for torchrun and slurm;
* :mod:`.options_check`: the option-file pre-flight (missing datasets, unknown types, arguments and numbers);
* :mod:`.data_checks`: truncated LMDBs and undecodable images named in one line;
* :mod:`.experiment_dirs`: archiving of the previous run shown, and undone when the new run fails early;
* :mod:`.yaml_values`: ``1e-4`` is a number in option files and ``--force_yml``.
"""
_PATCH_API = ('install', 'installed', 'is_installed', 'uninstall')


def __getattr__(name):
    # the patch machinery loads only when asked for (basicsr train/test, the tests): importing the
    # plugin, or the model mixin its ECMAModel builds on, does not even load what could be installed
    if name in _PATCH_API:
        from ecma_basicsr.engine import patches
        return getattr(patches, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
