"""Exact resume after SIGKILL, fallback past damaged checkpoints, atomic writes, safe loading.

The end-to-end tests train a tiny ECMASR (random crops + flips, EMA, validation at every
checkpoint) through the ``basicsr`` command: once uninterrupted, once killed with SIGKILL between
checkpoints and resumed with ``--auto_resume`` (normally, and with the newest model file
truncated so it must fall back one checkpoint). All end at the same weights.

Run as a script, this file is the training worker that kills itself:
``python tests/test_resume.py <kill_at_iter> <basicsr args...>``.
"""
import glob
import os
import os.path as osp
import pickle
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from helpers import make_sr_folders, tiny_sr_options, write_yaml

HERE = osp.dirname(osp.abspath(__file__))
ONE_THREAD = {'OMP_NUM_THREADS': '1'}  # deterministic and fast while other jobs share the CPU
TOTAL, SAVE_FREQ, KILL_AT = 6, 2, 5


def resume_options(name, train_dirs, val_dirs, workers=0):
    opt = tiny_sr_options(name, *train_dirs, total_iter=TOTAL, save_freq=SAVE_FREQ)
    opt['datasets']['train'].update(num_worker_per_gpu=workers)
    opt['datasets']['val'].update(dataroot_gt=val_dirs[0], dataroot_lq=val_dirs[1])
    opt['train']['ema_decay'] = 0.9
    return opt


def start(args, cwd, kill_at=None):
    """Start ``basicsr <args>`` (one thread); with ``kill_at`` it SIGKILLs itself after that iteration."""
    cmd = [sys.executable, '-m', 'ecma_basicsr.cli'] if kill_at is None else \
        [sys.executable, osp.join(HERE, 'test_resume.py'), str(kill_at)]
    return subprocess.Popen([*cmd, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **ONE_THREAD))


def finish(*procs):
    """Wait for the processes; returns their CompletedProcess records."""
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    train_dirs = make_sr_folders(str(root / 'data'), n=6, size=48)
    val_dirs = make_sr_folders(str(root / 'data_val'), n=2, size=32, seed=1)
    files = {name: str(write_yaml(root / f'{name}.yml', resume_options(name, train_dirs, val_dirs, workers=workers)))
             for name, workers in (('straight', 0), ('killed', 1), ('fallback', 1))}
    result = {'root': root}
    result['straight'], result['kill'] = finish(start(['train', '-opt', files['straight']], root),
                                                start(['train', '-opt', files['killed']], root, kill_at=KILL_AT))
    exp = root / 'experiments'
    result['after_kill'] = {sub: sorted(os.listdir(exp / 'killed' / sub)) for sub in ('models', 'training_states')}
    # the same interrupted run, but its newest model file was cut short (e.g. a disk problem)
    shutil.copytree(exp / 'killed', exp / 'fallback')
    newest = exp / 'fallback' / 'models' / f'net_g_{KILL_AT - 1}.pth'
    newest.write_bytes(newest.read_bytes()[:1000])
    result['resume'], result['fallback'] = finish(start(['train', '-opt', files['killed'], '--auto_resume'], root),
                                                  start(['train', '-opt', files['fallback'], '--auto_resume'], root))
    return result


def _newest_log(exp):
    return open(sorted(glob.glob(str(exp / 'train_*.log')), key=os.path.getmtime)[-1]).read()


def _max_diff(a, b):
    if isinstance(a, torch.Tensor):
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    if isinstance(a, dict):
        assert set(a) == set(b)
        return max([_max_diff(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max([_max_diff(x, y) for x, y in zip(a, b)] or [0.0])
    assert a == b
    return 0.0


def _final(root, name):
    exp = root / 'experiments' / name
    net = torch.load(exp / 'models' / f'net_g_{TOTAL}.pth', weights_only=True)
    state = torch.load(exp / 'training_states' / f'{TOTAL}.state', weights_only=True)
    return net, state


def test_interrupted_run_is_killed_between_checkpoints(runs):
    assert runs['straight'].returncode == 0, runs['straight'].stderr[-3000:]
    assert runs['kill'].returncode == -signal.SIGKILL, runs['kill'].stderr[-3000:]
    assert runs['after_kill'] == {'models': ['net_g_2.pth', 'net_g_4.pth'], 'training_states': ['2.state', '4.state']}


def test_sigkill_then_auto_resume_reaches_the_uninterrupted_weights(runs):
    assert runs['resume'].returncode == 0, runs['resume'].stderr[-3000:]
    exp = runs['root'] / 'experiments' / 'killed'
    log = _newest_log(exp)
    assert 'Resuming training from epoch: 1, iter: 4.' in log
    assert 'Resume: epoch 1 continues after 2 of 6 samples; RNG states restored.' in log
    assert re.search(r'iter:\s+5,', log) and not re.search(r'iter:\s+[1-4],', log)
    straight_net, straight_state = _final(runs['root'], 'straight')
    net, state = _final(runs['root'], 'killed')
    diffs = [_max_diff(net[k], straight_net[k]) for k in ('params', 'params_ema')]
    diffs += [_max_diff(state[k], straight_state[k]) for k in ('optimizers', 'rng')]
    print(f'killed at {KILL_AT}, resumed from 4: max |diff| params {diffs[0]:.3g}, EMA {diffs[1]:.3g}, '
          f'optimizer {diffs[2]:.3g}, RNG {diffs[3]:.3g}')
    assert _max_diff(net['params'], straight_net['params']) <= 1e-6
    assert _max_diff(net['params_ema'], straight_net['params_ema']) <= 1e-6
    assert _max_diff(net['params_ema'], net['params']) > 1e-4, 'EMA should differ from the raw weights'
    assert _max_diff(state['optimizers'], straight_state['optimizers']) <= 1e-6
    assert state['schedulers'] == straight_state['schedulers']
    assert state['loop'] == straight_state['loop'] == {'epoch': 1, 'position': 6, 'total_size': 6, 'seed': 0,
                                                       'world_size': 1}
    assert _max_diff(state['rng'], straight_state['rng']) == 0, 'RNG streams must continue exactly'


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(runs):
    res = runs['fallback']
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'Skipping resume point' in res.stderr and 'net_g_4.pth' in res.stderr and 'truncated' in res.stderr
    log = _newest_log(runs['root'] / 'experiments' / 'fallback')
    assert 'net_g_4.pth' in log and 'truncated or corrupt' in log, 'the fallback reason belongs in the log'
    assert 'Resuming training from epoch: 0, iter: 2.' in log
    assert 'Resume: epoch 0 continues after 4 of 6 samples' in log
    straight_net, _ = _final(runs['root'], 'straight')
    net, _ = _final(runs['root'], 'fallback')
    diffs = [_max_diff(net[k], straight_net[k]) for k in ('params', 'params_ema')]
    print(f'net_g_4.pth truncated, resumed from 2: max |diff| params {diffs[0]:.3g}, EMA {diffs[1]:.3g}')
    assert _max_diff(net['params'], straight_net['params']) <= 1e-6
    assert _max_diff(net['params_ema'], straight_net['params_ema']) <= 1e-6


# ----------------------------------------------------------------------------- in-process checks
class _Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _resume_opt(tmp_path, auto=True, resume_state=None):
    exp = tmp_path / 'experiments' / 'unit'
    (exp / 'models').mkdir(parents=True, exist_ok=True)
    (exp / 'training_states').mkdir(exist_ok=True)
    return {'name': 'unit', 'auto_resume': auto, 'rank': 0, 'network_g': {'type': 'ECMASR'},
            'path': {'experiments_root': str(exp), 'models': str(exp / 'models'),
                     'training_states': str(exp / 'training_states'), 'resume_state': resume_state}}


def _write_point(opt, it, state=None, net=None):
    base = {'epoch': 0, 'iter': it, 'optimizers': [], 'schedulers': []}
    torch.save(base if state is None else state, osp.join(opt['path']['training_states'], f'{it}.state'))
    torch.save({'params': {'w': torch.ones(2)}} if net is None else net,
               osp.join(opt['path']['models'], f'net_g_{it}.pth'))


def test_fallback_past_truncated_state_and_model_file(tmp_path, capsys):
    from ecma_basicsr.engine.checkpoint import load_resume_state
    opt = _resume_opt(tmp_path)
    for it in (2, 4, 6):
        _write_point(opt, it)
    state6 = osp.join(opt['path']['training_states'], '6.state')
    open(state6, 'r+b').truncate(50)
    model4 = osp.join(opt['path']['models'], 'net_g_4.pth')
    open(model4, 'r+b').truncate(50)
    state = load_resume_state(opt)
    assert state['iter'] == 2
    assert opt['path']['pretrain_network_g'].endswith('net_g_2.pth')
    err = capsys.readouterr().err
    assert '6.state' in err and '4.state' in err and 'net_g_4.pth' in err and 'truncated' in err


def test_all_unusable_states_is_an_error_not_a_fresh_start(tmp_path):
    from ecma_basicsr.engine.checkpoint import CheckpointError, load_resume_state
    opt = _resume_opt(tmp_path)
    _write_point(opt, 2)
    os.remove(osp.join(opt['path']['models'], 'net_g_2.pth'))
    with pytest.raises(CheckpointError, match=r'none usable:\n.*net_g_2.pth.*does not exist.*\nRestore a good'):
        load_resume_state(opt)


def test_crafted_pickle_is_refused_on_resume(tmp_path, capsys):
    from ecma_basicsr.engine.checkpoint import CheckpointError, UnsafeCheckpointError, load_resume_state, safe_load
    marker = tmp_path / 'pwned'
    opt = _resume_opt(tmp_path)
    _write_point(opt, 2)
    _write_point(opt, 4, state={'epoch': 0, 'iter': 4, 'optimizers': [], 'schedulers': [], 'x': _Payload(marker)})
    assert load_resume_state(opt)['iter'] == 2  # auto_resume: refused, falls back
    assert 'Refused to load' in capsys.readouterr().err
    path = osp.join(opt['path']['training_states'], '4.state')
    with open(path, 'wb') as f:  # a plain pickle (not torch's zip format) with the payload
        pickle.dump({'iter': _Payload(marker)}, f, protocol=2)
    explicit = _resume_opt(tmp_path, auto=False, resume_state=path)
    with pytest.raises(CheckpointError, match=r"Cannot resume from .*4.state.*Refused to load.*posix.system"):
        load_resume_state(explicit)
    with pytest.raises(UnsafeCheckpointError):
        safe_load(path)
    assert not marker.exists(), 'the payload ran'


def test_crafted_pickle_is_refused_as_pretrained_network(tmp_path):
    from basicsr.models import build_model

    from ecma_basicsr.engine.checkpoint import UnsafeCheckpointError
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'pretrained.pth'
    torch.save({'params': {}, 'extra': _Payload(marker)}, bad)
    opt = tiny_sr_options('unit', 'unused', 'unused')
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(pretrain_network_g=str(bad), models=str(tmp_path), training_states=str(tmp_path))
    with pytest.raises(UnsafeCheckpointError, match='Refused to load .*pretrained.pth.*posix.system'):
        build_model(opt)
    assert not marker.exists(), 'the payload ran'


def test_kill_during_checkpoint_write_keeps_the_previous_file(tmp_path):
    """SIGKILL after the temporary file is written, before the rename: the old file survives."""
    from ecma_basicsr.engine.checkpoint import safe_load
    from ecma_basicsr.engine.safe_save import atomic_save, remove_stale_temps
    path = tmp_path / 'net_g_4.pth'
    atomic_save({'params': {'w': torch.zeros(3)}}, str(path))
    # loads safe_save.py alone (torch only, not basicsr) to keep the subprocess quick
    script = ('import importlib.util, os, signal, sys, torch\n'
              'spec = importlib.util.spec_from_file_location("safe_save", sys.argv[2])\n'
              'safe_save = importlib.util.module_from_spec(spec)\n'
              'spec.loader.exec_module(safe_save)\n'
              'safe_save.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n'
              'safe_save.atomic_save({"params": {"w": torch.ones(3)}}, sys.argv[1])\n')
    module = osp.join(osp.dirname(HERE), 'ecma_basicsr', 'engine', 'safe_save.py')
    res = subprocess.run([sys.executable, '-c', script, str(path), module], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, **ONE_THREAD))
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert torch.equal(safe_load(str(path))['params']['w'], torch.zeros(3))
    leftovers = [n for n in os.listdir(tmp_path) if n != 'net_g_4.pth']
    assert len(leftovers) == 1 and leftovers[0].startswith('.net_g_4.pth.tmp-')
    assert remove_stale_temps(str(tmp_path)) == [str(tmp_path / leftovers[0])]
    assert os.listdir(tmp_path) == ['net_g_4.pth']


def test_sampler_resume_skips_exactly_the_consumed_global_positions():
    from ecma_basicsr.engine.train_state import ResumableSampler, epoch_permutation
    data = list(range(10))
    full = epoch_permutation(3, 1, 10)
    for world in (1, 2, 3):
        seen = []
        for rank in range(world):
            sampler = ResumableSampler(data, world, rank, seed=3)
            sampler.resume(1, 4)
            assert len(list(sampler)) == sampler.num_samples, 'epoch 0 (the default) is not the resumed one'
            sampler.set_epoch(1)
            seen += [idx for idx, _ in sampler]
            assert sampler._resume is None
            assert len(list(sampler)) == sampler.num_samples  # later passes are full epochs
        total = ResumableSampler(data, world, 0).total_size
        expected = [full_w % 10 for full_w in epoch_permutation(3, 1, total)[4:]]
        assert sorted(seen) == sorted(expected), f'world {world}'
    assert full != epoch_permutation(4, 1, 10), 'the order must depend on the seed'


def test_seeded_samples_augment_from_the_sample_seed_only():
    import random

    import numpy as np

    from ecma_basicsr.engine.train_state import SeededSamples

    class Noisy:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return (i, random.random(), float(np.random.rand()), float(torch.rand(1)))

    data = SeededSamples(Noisy())
    random.seed(1)
    first = data[(2, 77)]
    after = random.random()
    random.seed(1)
    data[(0, 5)]
    assert random.random() == after, 'loading must not consume the caller RNG'
    torch.manual_seed(123)
    np.random.seed(9)
    assert data[(2, 77)] == first and data[(2, 78)] != first


if __name__ == '__main__':
    kill_at = int(sys.argv[1])
    import ecma_basicsr  # noqa: F401
    from ecma_basicsr.cli import main
    from ecma_basicsr.models.ecma_model import ECMAModel

    step = ECMAModel.optimize_parameters

    def optimize_then_maybe_die(self, current_iter):
        step(self, current_iter)
        if current_iter == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    ECMAModel.optimize_parameters = optimize_then_maybe_die
    sys.exit(main(sys.argv[2:]))
