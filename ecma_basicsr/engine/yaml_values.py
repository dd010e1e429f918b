"""``1e-4`` is a number, in option files and in ``--force_yml``; overrides that create keys are flagged.

PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent: ``lr: 1e-4``
and ``lr: 1.0e4`` load as *strings*, and ``torch.optim`` later fails with a ``TypeError`` comparing
a string with a float. BasicSR's ``--force_yml`` parser (``_postprocess_yml_value``) knows only
plain digits with at most one dot, so ``train:optim_g:lr=1e-4`` and ``=2.0e-4`` are strings too.

:data:`NumberLoader` (a ``SafeLoader``) and :func:`loader_with_numbers` add the YAML 1.2 forms
(``1e-4``, ``1E5``, ``1.0e4``, ``.5e-3``) to the float resolver; :func:`parse_value` reads one
``--force_yml`` value with it (and BasicSR's ``none``/``true``/``false`` spellings). The engine
installs both into ``basicsr.utils.options`` (:mod:`.patches`), and the option pre-check reads
the file with the same loader, so the pre-check and the pipeline agree.
"""
import re

import yaml

# YAML 1.2 floats that YAML 1.1 misses: an exponent without a dot or without a sign.
_FLOAT_12 = re.compile(r'''^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$''')
_FIRST = list('-+0123456789.')


def add_number_resolver(loader_cls):
    """Let ``loader_cls`` resolve the YAML 1.2 exponent forms as floats (class-local, returns it)."""
    loader_cls.add_implicit_resolver('tag:yaml.org,2002:float', _FLOAT_12, _FIRST)
    return loader_cls


class NumberLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` as a float."""


add_number_resolver(NumberLoader)


def loader_with_numbers(loader_cls):
    """A subclass of ``loader_cls`` (e.g. BasicSR's ordered CLoader) that reads ``1e-4`` as a float."""
    return add_number_resolver(type(f'{loader_cls.__name__}WithNumbers', (loader_cls,), {}))


def ordered_yaml(original):
    def ordered():
        """``basicsr.utils.options.ordered_yaml``; its loader reads ``1e-4`` as a number."""
        loader, dumper = original()
        return loader_with_numbers(loader), dumper

    return ordered


def parse_value(text):
    """One ``--force_yml`` value: BasicSR's spellings of None/True/False, else YAML 1.2 numbers, lists, strings.

    Raises:
        ValueError: The text is not valid YAML (an unclosed ``[``).
    """
    text = text.strip()
    if text == '~' or text.lower() == 'none':
        return None
    if text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    if text.startswith('!!float'):
        return float(text.replace('!!float', ''))
    try:
        return yaml.load(text, Loader=NumberLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"'{text}' is not a valid value ({str(err).splitlines()[0]})") from None


def postprocess_yml_value(original):
    def postprocess(value):
        """``basicsr.utils.options._postprocess_yml_value``, reading ``1e-4`` and ``2.0e-4`` as numbers."""
        return parse_value(value)

    return postprocess
