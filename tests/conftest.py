"""Shared fixtures: the ``../shared`` folder beside the checkout, the training engine, threads."""
import os
import os.path as osp

import pytest
import torch

import ecma_basicsr  # noqa: F401  (import hook + registries, before any basicsr import in tests)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.abspath(os.environ.get('ECMA_SHARED', osp.join(REPO, '..', 'shared')))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_path(*parts):
    """Path under ../shared, or skip the test with the reason when it is not there."""
    path = osp.join(SHARED, *parts)
    if not osp.exists(path):
        pytest.skip(f'{path} not found: this test needs the shared benchmark folder beside the checkout '
                    f'(or ECMA_SHARED pointing at it)')
    return path


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture
def engine():
    """The training engine installed for one test (as ``basicsr train`` / ``basicsr test`` do), then removed."""
    from ecma_basicsr import engine as engine_pkg
    with engine_pkg.installed():
        yield engine_pkg
