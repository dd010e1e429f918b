"""End to end through the ``basicsr`` command: train, checkpoint, --auto_resume, test; errors."""
import glob
import os
import os.path as osp
import re
import shutil
import sys

import pytest
import torch
from helpers import make_sr_folders, run_cli, tiny_sr_options, write_yaml


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train 4 iterations, then resume to 6 with --auto_resume (shared by the tests below)."""
    root = tmp_path_factory.mktemp('train')
    gt, lq = make_sr_folders(str(root / 'data'))
    opt = tiny_sr_options('tiny_ecmasr', gt, lq, total_iter=4)
    opt['recipe'] = {'global_batch_size': 4, 'num_processes': 2}  # the run uses 2 x 1: warned, not refused
    opt_file = write_yaml(root / 'tiny.yml', opt)
    first = run_cli(['train', '-opt', str(opt_file)], cwd=root)
    second = run_cli(['train', '-opt', str(opt_file), '--auto_resume', '--force_yml', 'train:total_iter=6',
                      'train:scheduler:periods=[6]'], cwd=root)
    return root, opt_file, first, second


def test_train_writes_checkpoints_and_validates(trained):
    root, _, first, _ = trained
    assert first.returncode == 0, first.stderr[-3000:]
    exp = root / 'experiments' / 'tiny_ecmasr'
    assert (exp / 'models' / 'net_g_4.pth').is_file()
    assert (exp / 'training_states' / '4.state').is_file()
    log = open(glob.glob(str(exp / 'train_*.log'))[0]).read()
    assert re.search(r'# psnr: \d+\.\d+', log) and re.search(r'# ssim: 0\.\d+', log)
    assert 'l_freq' in log and 'l_pix' in log
    params = torch.load(exp / 'models' / 'net_g_4.pth', weights_only=True)['params']
    assert any(k.endswith('conv_ctx.weight') for k in params)


def test_log_warns_once_when_the_global_batch_differs_from_the_recipe(trained):
    root, _, first, _ = trained
    assert first.returncode == 0, first.stderr[-3000:]
    log = open(glob.glob(str(root / 'experiments' / 'tiny_ecmasr' / 'train_*.log'))[0]).read()
    assert 'Global batch size: 2 x 1 = 2' in log
    warnings = [line for line in log.splitlines() if 'differs from the recipe' in line]
    assert len(warnings) == 1 and 'WARNING' in warnings[0], warnings
    assert ("Global batch size 2 x 1 = 2 differs from the recipe's 4 (2 processes x 2)" in warnings[0]
            and 'set datasets:train:batch_size_per_gpu: 4 for these 1 process(es) or run 2 processes with '
                'batch_size_per_gpu: 2.' in warnings[0])


def test_recipe_batch_warning_names_both_batches_and_the_fix():
    from ecma_basicsr.engine.train_state import recipe_batch_warning
    recipe = {'global_batch_size': 64, 'num_processes': 8}
    assert recipe_batch_warning(recipe, 8, 8) is None
    assert recipe_batch_warning(None, 8, 1) is None and recipe_batch_warning({'num_processes': 8}, 8, 1) is None
    assert recipe_batch_warning(recipe, 8, 4) == (
        "Global batch size 8 x 4 = 32 differs from the recipe's 64 (8 processes x 8), which the learning rate and "
        'iteration count were set for: set datasets:train:batch_size_per_gpu: 16 for these 4 process(es) or run 8 '
        'processes with batch_size_per_gpu: 8.')
    assert recipe_batch_warning({'global_batch_size': 64}, 16, 3).endswith(': run 4 processes.')
    assert recipe_batch_warning({'global_batch_size': 64}, 5, 3).endswith(
        ': choose batch_size_per_gpu x processes = 64.')
    with pytest.raises(ValueError, match='recipe:global_batch_size must be a positive integer'):
        recipe_batch_warning({'global_batch_size': '64'}, 8, 8)
    with pytest.raises(ValueError, match='recipe must be a mapping'):
        recipe_batch_warning(64, 8, 8)


def test_auto_resume_continues_at_the_right_iteration(trained):
    root, _, _, second = trained
    assert second.returncode == 0, second.stderr[-3000:]
    exp = root / 'experiments' / 'tiny_ecmasr'
    logs = sorted(glob.glob(str(exp / 'train_*.log')), key=os.path.getmtime)
    resumed = open(logs[-1]).read()
    assert 'Resuming training from epoch' in resumed and 'iter: 4.' in resumed
    assert re.search(r'iter:\s+5,', resumed), 'first iteration after resume should be 5'
    assert not re.search(r'iter:\s+[1-4],', resumed), 'resume must not redo iterations 1-4'
    assert (exp / 'models' / 'net_g_6.pth').is_file()


def test_basicsr_test_produces_metrics(trained):
    root, opt_file, _, _ = trained
    import yaml
    opt = yaml.safe_load(open(opt_file))
    test_opt = {k: opt[k] for k in ('model_type', 'scale', 'num_gpu', 'manual_seed', 'network_g', 'val')}
    test_opt.update(name='tiny_test', datasets={'test_1': opt['datasets']['val']},
                    path=dict(pretrain_network_g=str(root / 'experiments/tiny_ecmasr/models/net_g_6.pth'),
                              strict_load_g=True, param_key_g='params'))
    test_opt['val'] = dict(opt['val'], save_img=True, suffix=None)
    test_file = write_yaml(root / 'tiny_test.yml', test_opt)
    res = run_cli(['test', '-opt', str(test_file)], cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    log = open(glob.glob(str(root / 'results/tiny_test/test_*.log'))[0]).read()
    psnr = float(re.search(r'# psnr: (\d+\.\d+)', log).group(1))
    assert 10 < psnr < 100
    assert len(glob.glob(str(root / 'results/tiny_test/visualization/tiny_val/*.png'))) == 6


def test_missing_dataset_names_path_and_prep_command(tmp_path):
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    res = run_cli(['train', '-opt', osp.join(repo, 'options', 'train_ECMA_SR_x4.yml')], cwd=tmp_path)
    assert res.returncode == 1
    assert 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb' in res.stderr and 'does not exist' in res.stderr
    assert 'python -m datasets_prep div2k' in res.stderr
    assert not (tmp_path / 'experiments').exists(), 'a failed pre-flight must not create experiment folders'


def test_unknown_arch_lists_valid_choices(tmp_path):
    gt, lq = make_sr_folders(str(tmp_path / 'data'), n=2)
    opt = tiny_sr_options('bad', gt, lq)
    opt['network_g']['type'] = 'ECMAX'
    res = run_cli(['train', '-opt', str(write_yaml(tmp_path / 'bad.yml', opt))], cwd=tmp_path)
    assert res.returncode == 1
    assert "network_g:type = 'ECMAX' is not registered" in res.stderr and 'ECMASR' in res.stderr


def test_help_lists_subcommands():
    res = run_cli(['--help'], cwd='.')
    assert res.returncode == 0 and all(c in res.stdout for c in ('train', 'test', 'bench'))
    res = run_cli(['train', '--help'], cwd='.')
    assert res.returncode == 0 and '--auto_resume' in res.stdout and '--launcher' in res.stdout
    script = shutil.which('basicsr', path=osp.dirname(sys.executable))
    assert script, 'the basicsr console script is not installed beside this python'
