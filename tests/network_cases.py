"""Every registered network, as cases for the one parametrized test in ``test_archs.py``.

``TINY``: a small config for forward/backward/odd sizes (CPU-fast).
``FULL``: the published configuration with its expected parameter count and tolerance;
these are only built (never run), so they stay cheap.
Add a network here when you add its ``*_arch.py``.
"""
from dataclasses import dataclass, field


@dataclass
class Case:
    arch: str
    kwargs: dict = field(default_factory=dict)
    scale: int = 1
    in_ch: int = 3
    # published params (count, relative tolerance); only for FULL cases
    params: float = None
    rtol: float = 0.03

    @property
    def id(self):
        extra = ','.join(f'{k}={v}' for k, v in self.kwargs.items() if not isinstance(v, (list, tuple, dict)))
        return f'{self.arch}({extra})'


TINY = []
FULL = []
