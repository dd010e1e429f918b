"""Named configurations of the registered networks, with the numbers their papers published.

Each ``*_arch.py`` exports one table ``PRESETS = {name: Preset(...)}`` for its networks. This
module gives them one resolver (:func:`resolve_preset`: names match case-insensitively, one
error message listing the valid names) and gathers every table (:func:`all_presets`) for the
tests, Table 1, the bench presets and ``python -m ecma_basicsr.presets``.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """One published configuration of a registered network.

    Args:
        arch (str): Registered class name (``type:`` in an option file).
        kwargs (dict): Constructor arguments that build it.
        params (float | None): Published parameter count (absolute, e.g. ``10.5e6``).
        macs (float | None): Published MACs ("FLOPs" in the papers), absolute.
        macs_input (tuple | None): (H, W) of the *output* the MACs were counted for.
        source (str): Where the numbers were printed, e.g. ``'ECMA Table 1'``.
        scale (int): Upscaling factor (1 for restoration).
        rtol (float): How close our count must be to ``params`` (the tests hold us to it): 3% where
            the paper leaves the layout open, less where we reproduce the authors' code.
    """

    arch: str
    kwargs: dict = field(default_factory=dict)
    params: float = None
    macs: float = None
    macs_input: tuple = None
    source: str = ''
    scale: int = 1
    rtol: float = 0.03

    @property
    def task(self):
        """'sr' for super-resolution (scale > 1), else 'restore'."""
        return 'sr' if self.scale > 1 else 'restore'


def _norm(name):
    return str(name).strip().lower()


def resolve_preset(presets, name, what, prefix=''):
    """The entry called ``name`` in ``presets`` (case-insensitive), with or without the family ``prefix``.

    Args:
        presets (dict): A network's table (of :class:`Preset` or of plain keyword dicts).
        name (str): Requested name, e.g. ``'GoPro-width32'`` or ``'NAFNet-GoPro-width32'`` with
            ``prefix='NAFNet-'``.
        what (str): What is being named, for the message (e.g. ``'ECMA variant'``).
        prefix (str): Family prefix of the table's keys that ``name`` may leave out.

    Raises:
        ValueError: unknown name; the message lists the valid choices.
    """
    by_norm = {_norm(k): v for k, v in presets.items()}
    for candidate in (name, f'{prefix}{name}'):
        if _norm(candidate) in by_norm:
            return by_norm[_norm(candidate)]
    short = [k[len(prefix):] if prefix and k.lower().startswith(prefix.lower()) else k for k in presets]
    raise ValueError(f"Unknown {what} '{name}'; valid choices: {', '.join(short)}"
                     + (f" (or with the '{prefix}' prefix)." if prefix else '.'))


def all_presets():
    """Every ``PRESETS`` table, merged: ``{name: Preset}``.

    The tables of the plugin's ``*_arch.py`` modules and of :mod:`.toolbox_presets` (networks that
    BasicSR itself registers).
    """
    import importlib

    from ecma_basicsr.registry import arch_module_names

    merged = {}
    for module in arch_module_names() + ['ecma_basicsr.archs.toolbox_presets']:
        table = getattr(importlib.import_module(module), 'PRESETS', {})
        for name, preset in table.items():
            if name in merged:
                raise ValueError(f"Preset name '{name}' is defined twice ({module} and another arch file).")
            merged[name] = preset
    return merged
