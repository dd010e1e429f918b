"""Multi-process training on CPU (gloo): torchrun and slurm launches, DDP == one big batch.

Two processes with batch 2 each must take exactly the same steps as one process with batch 4:
the sampler gives rank r the global positions r, r + 2, ... of the seed's order, augmentation
depends only on a sample's position (not on the rank), GroupNorm/LayerNorm are per-sample and
the losses are means, so DDP's gradient average equals the big-batch gradient.

Run as a script, this file is the training worker that records the weights after every step
and every file each rank writes: ``python tests/test_dist.py <record_dir> <basicsr args...>``.
"""
import glob
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import make_sr_folders, tiny_sr_options, write_yaml

HERE = osp.dirname(osp.abspath(__file__))
ITERS = 3  # 8 images, global batch 4: two iterations per epoch, so the run crosses an epoch boundary


def dist_options(name, gt, lq, batch):
    opt = tiny_sr_options(name, gt, lq, total_iter=ITERS, save_freq=2)
    opt['logger']['save_checkpoint_freq'] = 1  # validation stays at every 2nd iteration
    opt['datasets']['train']['batch_size_per_gpu'] = batch
    opt['datasets']['val'] = dict(opt['datasets']['val'], dataroot_gt=gt, dataroot_lq=lq)
    opt['train']['ema_decay'] = 0.9
    opt['val']['save_img'] = True
    opt['recipe'] = {'global_batch_size': 4, 'num_processes': 2}  # both runs reach it: no warning
    return opt


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.update(extra)
    return env


def _worker(record_dir, args, torchrun_args=None):
    """Start the recording worker, under ``python -m torch.distributed.run <torchrun_args>`` when given."""
    launcher = [sys.executable] + (['-m', 'torch.distributed.run', *torchrun_args] if torchrun_args else [])
    return subprocess.Popen([*launcher, osp.join(HERE, 'test_dist.py'), str(record_dir), *args],
                            cwd=str(record_dir.parent), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())


def _finish(proc):
    out, err = proc.communicate(timeout=400)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    gt, lq = make_sr_folders(str(root / 'data'), n=8, size=48)
    two = write_yaml(root / 'two.yml', dist_options('two', gt, lq, batch=2))
    one = write_yaml(root / 'one.yml', dist_options('one', gt, lq, batch=4))
    (root / 'rec_two').mkdir()
    (root / 'rec_one').mkdir()
    two_procs = _worker(root / 'rec_two', ['train', '-opt', str(two), '--launcher', 'pytorch'],
                        torchrun_args=('--standalone', '--nproc_per_node=2'))
    one_proc = _worker(root / 'rec_one', ['train', '-opt', str(one)])
    return root, _finish(two_procs), _finish(one_proc)


def _weights(rec, rank, it):
    return torch.load(rec / f'rank{rank}_iter{it}.pt', weights_only=True)


def test_two_process_steps_equal_one_big_batch(runs):
    root, res_two, res_one = runs
    assert res_two.returncode == 0, res_two.stdout[-2000:] + res_two.stderr[-3000:]
    assert res_one.returncode == 0, res_one.stderr[-3000:]
    for it in range(1, ITERS + 1):
        rank0, rank1 = _weights(root / 'rec_two', 0, it), _weights(root / 'rec_two', 1, it)
        single = _weights(root / 'rec_one', 0, it)
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), f'iteration {it}: {key} differs between ranks'
        diff = max((rank0[k] - single[k]).abs().max().item() for k in rank0)
        print(f'iteration {it}: max |2 processes x batch 2 - 1 process x batch 4| = {diff:.3g}')
        assert diff <= 1e-5, f'iteration {it}: DDP differs from the single-process global batch by {diff}'
    moved = max((_weights(root / 'rec_one', 0, ITERS)[k] - _weights(root / 'rec_one', 0, 1)[k]).abs().max().item()
                for k in rank0)
    assert moved > 1e-4, 'the weights should change during training'


def test_only_rank0_logs_and_writes_and_the_log_states_the_global_batch(runs):
    root, res_two, _ = runs
    assert res_two.returncode == 0, res_two.stderr[-3000:]
    exp = root / 'experiments' / 'two'
    logs = glob.glob(str(exp / 'train_*.log'))
    assert len(logs) == 1
    log = open(logs[0]).read()
    assert 'World size (gpu number): 2' in log and 'Global batch size: 2 x 2 = 4' in log
    assert 'differs from the recipe' not in log
    assert not (root / 'rec_two' / 'writes_rank1.txt').exists(), 'rank 1 wrote files'
    written = open(root / 'rec_two' / 'writes_rank0.txt').read().split()
    names = sorted(osp.basename(p) for p in written)
    assert {'net_g_1.pth', '1.state', 'net_g_2.pth', '2.state', 'net_g_latest.pth'} <= set(names)
    assert any(n.endswith('_2.png') for n in names), 'rank 0 should save the validation images'
    state = torch.load(exp / 'training_states' / '2.state', weights_only=True)
    assert len(state['rng']) == 2 and state['loop']['world_size'] == 2 and state['loop']['position'] == 8
    assert not torch.equal(state['rng'][0]['torch'], state['rng'][1]['torch']), 'ranks are seeded seed + rank'


def test_slurm_launch_resumes_the_torchrun_run_exactly(runs):
    """srun-style start (SLURM variables, MASTER_ADDR given, no scontrol) of 2 processes that
    --auto_resume a copy of the torchrun run from its iteration-1 checkpoint (mid-epoch): iterations
    2 and 3 must repeat the uninterrupted run's steps on both ranks."""
    root, res_two, _ = runs
    assert res_two.returncode == 0, res_two.stderr[-3000:]
    exp = root / 'experiments'
    shutil.copytree(exp / 'two', exp / 'again')
    for it in (2, 3):  # as if the run had been killed after its iteration-1 checkpoint
        os.remove(exp / 'again' / 'models' / f'net_g_{it}.pth')
        os.remove(exp / 'again' / 'training_states' / f'{it}.state')
    opt = yaml.safe_load(open(root / 'two.yml'))
    opt.update(name='again', dist_params={'backend': 'nccl', 'port': _free_port()})  # no GPU: falls back to gloo
    opt_file = write_yaml(root / 'again.yml', opt)
    rec = root / 'rec_again'
    rec.mkdir()
    procs = []
    for rank in range(2):
        env = _env(SLURM_PROCID=str(rank), SLURM_NTASKS='2', SLURM_LOCALID=str(rank), SLURM_NODELIST='localhost',
                   MASTER_ADDR='127.0.0.1')
        cmd = [sys.executable, osp.join(HERE, 'test_dist.py'), str(rec), 'train', '-opt', str(opt_file),
               '--launcher', 'slurm', '--auto_resume']
        procs.append(subprocess.Popen(cmd, cwd=str(root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = [_finish(p) for p in procs]
    for res in results:
        assert res.returncode == 0, res.stderr[-3000:]
    assert 'backend is nccl but no CUDA GPU is visible; using gloo' in results[0].stderr
    logs = sorted(glob.glob(str(exp / 'again' / 'train_*.log')), key=os.path.getmtime)
    log = open(logs[-1]).read()
    assert 'World size (gpu number): 2' in log and 'Global batch size: 2 x 2 = 4' in log
    assert 'Resuming training from epoch: 0, iter: 1.' in log
    assert 'Resume: epoch 0 continues after 4 of 8 samples; RNG states restored.' in log
    assert sorted(os.listdir(rec)) == ['rank0_iter2.pt', 'rank0_iter3.pt', 'rank1_iter2.pt', 'rank1_iter3.pt',
                                       'writes_rank0.txt']
    for rank in (0, 1):
        for it in (2, 3):
            resumed, straight = _weights(rec, rank, it), _weights(root / 'rec_two', rank, it)
            diff = max((resumed[k] - straight[k]).abs().max().item() for k in straight)
            print(f'rank {rank}, iteration {it}: max |resumed - uninterrupted| = {diff:.3g}')
            assert diff <= 1e-6


# ----------------------------------------------------------------------------- in-process checks
def test_backend_choice_and_dist_params_errors(capsys):
    from ecma_basicsr.engine.dist import resolve_dist_params
    assert resolve_dist_params({})['backend'] == ('nccl' if torch.cuda.is_available() else 'gloo')
    assert resolve_dist_params({'backend': 'gloo', 'port': '29511', 'timeout': 600}) == {
        'backend': 'gloo', 'port': 29511, 'timeout': __import__('datetime').timedelta(seconds=600)}
    if not torch.cuda.is_available():
        assert resolve_dist_params({'backend': 'nccl'})['backend'] == 'gloo'
        assert 'no CUDA GPU is visible; using gloo' in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"Unknown dist_params key\(s\) \['prot'\]; valid keys: backend, port"):
        resolve_dist_params({'prot': 1})
    with pytest.raises(ValueError, match="dist_params:backend 'ncl' is not one of auto, nccl, gloo"):
        resolve_dist_params({'backend': 'ncl'})


def test_dist_params_come_from_the_option_file_and_force_yml(tmp_path):
    from ecma_basicsr.engine.dist import read_dist_params
    path = write_yaml(tmp_path / 'o.yml', {'name': 'x', 'dist_params': {'backend': 'nccl', 'port': 29500}})
    assert read_dist_params(['-opt', str(path), '--launcher', 'pytorch']) == {'backend': 'nccl', 'port': 29500}
    forced = read_dist_params(['-opt', str(path), '--force_yml', 'dist_params:backend=gloo', 'train:x=1',
                               '--launcher', 'pytorch'])
    assert forced == {'backend': 'gloo', 'port': 29500}


def test_pytorch_launcher_without_torchrun_says_how_to_start(monkeypatch, engine):
    from basicsr.utils import options
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match=r'--launcher pytorch needs the environment variable\(s\) RANK, .*torchrun '
                                           r'--nproc_per_node=2 -m ecma_basicsr.cli train'):
        options.init_dist('pytorch')  # what BasicSR's parse_options calls, with the engine installed


if __name__ == '__main__':
    record_dir = sys.argv[1]
    from basicsr.models import sr_model

    import ecma_basicsr  # noqa: F401
    from ecma_basicsr.cli import main
    from ecma_basicsr.engine import model as engine_model
    from ecma_basicsr.models.ecma_model import ECMAModel

    def rank():
        import torch.distributed as dist
        return dist.get_rank() if dist.is_initialized() else 0

    def record_write(path):
        with open(osp.join(record_dir, f'writes_rank{rank()}.txt'), 'a') as f:
            f.write(f'{path}\n')

    step, save, imwrite = ECMAModel.optimize_parameters, engine_model.atomic_save, sr_model.imwrite

    def optimize_and_record(self, current_iter):
        step(self, current_iter)
        params = {k: v.detach().clone() for k, v in self.get_bare_model(self.net_g).state_dict().items()}
        torch.save(params, osp.join(record_dir, f'rank{rank()}_iter{current_iter}.pt'))

    def save_and_record(obj, path, **kwargs):
        record_write(path)
        return save(obj, path, **kwargs)

    def imwrite_and_record(img, path, *args, **kwargs):
        record_write(path)
        return imwrite(img, path, *args, **kwargs)

    ECMAModel.optimize_parameters = optimize_and_record
    engine_model.atomic_save = save_and_record
    sr_model.imwrite = imwrite_and_record
    sys.exit(main(sys.argv[2:]))
