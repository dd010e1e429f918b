"""Clear errors when a checkpoint does not fit the network it is loaded into.

BasicSR's ``BaseModel.load_network`` logs the differing keys as warnings and then calls
``net.load_state_dict``; when shapes differ torch raises one very long ``RuntimeError`` that buries
the cause (often a wrong ``upscale`` or ``width`` in the option file). Networks that mix in
:class:`CheckedLoadMixin` check the state dict first and raise :class:`CheckpointMismatchError`
that names the configuration, the missing / unexpected keys and every mis-shaped tensor, plus a
network-specific hint (e.g. "this checkpoint was trained for upscale=3").

The check runs inside ``load_state_dict``, so it works for BasicSR's ``pretrain_network_g`` /
``param_key_g`` / ``strict_load_g`` as well as for direct calls.
"""
from collections import OrderedDict

_SHOW = 8  # list at most this many keys per category; the count is always given


class CheckpointMismatchError(RuntimeError):
    """A state dict whose keys or tensor shapes do not fit the network configuration."""


def strip_prefix(state_dict, prefix='module.'):
    """Drop a DataParallel / DDP ``module.`` prefix from every key that has it."""
    if not any(k.startswith(prefix) for k in state_dict):
        return state_dict
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state_dict.items())


def compare_state_dict(expected, given):
    """Return ``(missing, unexpected, mis_shaped)`` between two state dicts.

    ``mis_shaped`` is a list of ``(key, given_shape, expected_shape)``.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mis_shaped = []
    for k, v in given.items():
        if k in expected and hasattr(v, 'shape') and tuple(v.shape) != tuple(expected[k].shape):
            mis_shaped.append((k, tuple(v.shape), tuple(expected[k].shape)))
    return missing, unexpected, mis_shaped


def _listing(title, items):
    lines = [f'  {title} ({len(items)}):']
    lines += [f'    {item}' for item in items[:_SHOW]]
    if len(items) > _SHOW:
        lines.append(f'    ... and {len(items) - _SHOW} more')
    return lines


def mismatch_message(name, missing, unexpected, mis_shaped, hint=None):
    """Human-readable description of a mismatch (empty string when there is none)."""
    if not (missing or unexpected or mis_shaped):
        return ''
    lines = [f'Checkpoint does not fit {name}:']
    if mis_shaped:
        lines += _listing('tensors with a different shape (checkpoint vs network)',
                          [f'{k}: {tuple(a)} vs {tuple(b)}' for k, a, b in mis_shaped])
    if missing:
        lines += _listing('keys the network needs but the checkpoint lacks', missing)
    if unexpected:
        lines += _listing('keys in the checkpoint the network does not have', unexpected)
    if hint:
        lines.append(f'  Hint: {hint}')
    lines.append('  Check the network options (network_g) against the configuration the checkpoint was '
                 'trained with, and path:param_key_g (use ~ for a checkpoint that is a bare state dict).')
    return '\n'.join(lines)


def check_state_dict(module, state_dict, strict=True, name=None, hint=None):
    """Raise :class:`CheckpointMismatchError` when ``state_dict`` cannot load into ``module``.

    Args:
        module (nn.Module): The network.
        state_dict (Mapping): Candidate weights (a ``module.`` prefix is tolerated).
        strict (bool): As in ``load_state_dict``: when False, missing and unexpected keys are
            allowed, but mis-shaped tensors are still an error (torch would raise on them anyway).
        name (str): How to name the network in the message (defaults to its ``repr`` head).
        hint (str | callable): Extra line for the message (e.g. the configuration the checkpoint
            suggests), or a function ``hint(state_dict) -> str | None`` called only on a mismatch.

    Returns:
        The state dict without a ``module.`` prefix.
    """
    state_dict = strip_prefix(state_dict)
    missing, unexpected, mis_shaped = compare_state_dict(module.state_dict(), state_dict)
    if not strict:
        missing, unexpected = [], []
    if missing or unexpected or mis_shaped:
        if callable(hint):
            hint = hint(state_dict)
        raise CheckpointMismatchError(
            mismatch_message(name or type(module).__name__, missing, unexpected, mis_shaped, hint))
    return state_dict


class CheckedLoadMixin:
    """Mix into an ``nn.Module`` (before ``nn.Module`` in the bases) for checked loading.

    Subclasses may define ``config_summary()`` (a short string of their configuration),
    ``checkpoint_hint(state_dict)`` (what the checkpoint's shapes suggest, or None) and
    ``map_checkpoint(state_dict)`` (the authors' key layout translated to theirs).
    """

    def config_summary(self):
        return type(self).__name__

    def checkpoint_hint(self, state_dict):  # noqa: ARG002  (overridden by networks)
        return None

    def map_checkpoint(self, state_dict):
        """``state_dict`` in this network's key layout: unchanged here; a network whose authors published
        checkpoints under other key names overrides it. Runs first in ``load_state_dict``; a loader that
        compares keys beforehand can call it too."""
        return state_dict

    def load_state_dict(self, state_dict, strict=True, assign=False):
        state_dict = check_state_dict(self, self.map_checkpoint(state_dict), strict=strict,
                                      name=self.config_summary(), hint=self.checkpoint_hint)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
