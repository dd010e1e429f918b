"""What must happen before ``basicsr==1.4.2`` is imported under current torch / torchvision; nothing else.

1. **The ``functional_tensor`` alias.** ``basicsr.data.degradations`` imports ``rgb_to_grayscale`` from
   ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17, so ``import basicsr``
   fails. :class:`FunctionalTensorAlias` is a finder at the end of ``sys.meta_path``: it is asked
   only for modules no other finder has (an older torchvision that still ships the module wins),
   answers only for that one name, and builds the alias from ``torchvision.transforms.functional``
   at the moment BasicSR imports it.
2. **The weights-only allow-list.** ``torch.load`` is weights-only by default since torch 2.6, and
   BasicSR's training states hold ``collections.Counter`` (``MultiStepRestartLR`` milestones). We
   allow-list exactly the plain containers BasicSR writes (:func:`allow_basicsr_state_types`) instead of
   turning the safe loader off, so a crafted checkpoint is still never unpickled with arbitrary code.
   It is applied when the alias is built (BasicSR is being imported) and by ``import ecma_basicsr``.

Where it is installed:

* at interpreter start-up, by ``ecma_basicsr-import-hook.pth``, which ``pip install .`` and
  ``pip install -e .`` put into site-packages (see ``setup.py``), so a plain ``import basicsr`` works in
  users' scripts and notebooks. The ``.pth`` line (:data:`PTH_LINE`) loads this file on its own, not
  the package: it must stay standard-library only and cheap (no torch import at start-up);
* by ``import ecma_basicsr`` (idempotent), for a source checkout used through ``PYTHONPATH``.

Everything else the plugin changes in BasicSR (resume, checkpoints, distributed launch) is the
training engine, installed explicitly by ``basicsr train`` / ``basicsr test``: :mod:`ecma_basicsr.engine`.
"""
import importlib.machinery
import sys

ALIAS = 'torchvision.transforms.functional_tensor'
PTH_NAME = 'ecma_basicsr-import-hook.pth'  # sorts after setuptools' "__editable__.*.pth" (see PTH_LINE)
# site.py executes a .pth line that starts with "import". find_spec locates the package without running
# its __init__ (which imports torch); for an editable install it needs setuptools' finder, whose .pth
# ("__editable__...") site.py processes before ours (alphabetical order). No package (or an older one
# without this file) found: nothing happens.
PTH_LINE = ("import importlib.util as ilu, os; pkg = ilu.find_spec('ecma_basicsr'); "
            "path = pkg and pkg.submodule_search_locations and "
            "os.path.join(list(pkg.submodule_search_locations)[0], 'import_hook.py'); "
            "spec = path and os.path.isfile(path) and "
            "ilu.spec_from_file_location('ecma_basicsr_import_hook', path); "
            "hook = spec and ilu.module_from_spec(spec); "
            "spec and (spec.loader.exec_module(hook), hook.install_finder())")
_MARK = 'ecma_basicsr_functional_tensor_alias'  # how a finder is recognised (this file may be loaded twice)


def allow_basicsr_state_types():
    """Allow-list the containers BasicSR puts in training states for ``torch.load(weights_only=True)``."""
    import collections

    import torch
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has neither the list nor the weights-only default
        add([collections.Counter, collections.OrderedDict, collections.defaultdict])


class FunctionalTensorAlias:
    """Finder and loader of ``torchvision.transforms.functional_tensor`` as an alias module.

    Only consulted after every other finder failed, so it never shadows a real module.
    """

    ecma_basicsr_functional_tensor_alias = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIAS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin='alias of torchvision.transforms.functional')

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        from torchvision.transforms import functional
        module.__doc__ = ('Alias made by ecma_basicsr.import_hook: torchvision 0.17 removed this module, '
                          'basicsr 1.4.2 imports rgb_to_grayscale from it.')
        module.rgb_to_grayscale = functional.rgb_to_grayscale
        allow_basicsr_state_types()  # torch is loaded by now: BasicSR is being imported


def installed_finders():
    """The alias finders in ``sys.meta_path`` (at most one after :func:`install_finder`)."""
    return [f for f in sys.meta_path if getattr(f, _MARK, False)]


def install_finder():
    """Append the alias finder to ``sys.meta_path`` unless one is there; returns the active finder."""
    found = installed_finders()
    if found:
        return found[0]
    finder = FunctionalTensorAlias()
    sys.meta_path.append(finder)
    return finder


def uninstall_finder():
    """Remove the alias finders (an alias module already imported stays in ``sys.modules``)."""
    for finder in installed_finders():
        sys.meta_path.remove(finder)


def install():
    """Both import-time fixes: the alias finder and the allow-list (imports torch). Idempotent."""
    install_finder()
    allow_basicsr_state_types()
