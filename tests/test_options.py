"""Every option file: parses, names registered types, builds its network, and points at data that
``datasets_prep`` produces (checked against sample sets in the real layouts); one file runs."""
import glob
import os.path as osp

import pytest
import torch
import yaml
from basicsr.archs import build_network

from ecma_basicsr.engine.options_check import check_registered_types, missing_dataset_paths
from helpers import run_cli

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FILES = sorted(glob.glob(osp.join(REPO, 'options', '**', '*.yml'), recursive=True))
IDS = [osp.relpath(f, osp.join(REPO, 'options')) for f in FILES]

# dataset folder (under datasets/) -> sample layout that stands in for it
SAMPLES = {'DIV2K': ('sr', 'div2k'), 'GoPro': ('deblur', 'gopro'), 'HIDE': ('deblur', 'hide'),
           'RealBlur_J': ('deblur', 'realblur_j'), 'RealBlur_R': ('deblur', 'realblur_r'), 'REDS': ('deblur', 'reds'),
           'SIDD': ('denoise', 'sidd')}
SR_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')
# Clean test sets of the synthetic-denoising tables: plain image folders the user copies to
# datasets/<name> (no archive to prepare; README "Datasets").
COPIED_FOLDERS = ('CBSD68', 'Kodak24', 'McMaster', 'Set12', 'BSD68')


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def test_there_are_option_files_for_every_table():
    folders = {osp.dirname(i) for i in IDS}
    assert {'table2_gopro', 'table3_hide', 'table4_realblur', 'table5_sr_x4', 'table6_reds', 'table7_sidd',
            'table8_9_ablation'} <= folders
    assert 'train_ECMA_SR_x4.yml' in IDS


@pytest.mark.parametrize('path', FILES, ids=IDS)
def test_option_file_is_valid(path):
    opt = load(path)
    for key in ('name', 'model_type', 'network_g', 'datasets'):
        assert key in opt, f'{path} lacks {key}'
    assert not check_registered_types(opt)
    with torch.device('meta'):
        build_network(dict(opt['network_g']))


def test_generated_ecma_options_are_up_to_date():
    import importlib.util
    spec = importlib.util.spec_from_file_location('make_ecma_options', osp.join(REPO, 'options', 'make_ecma_options.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for rel, text in mod.all_files().items():
        with open(osp.join(REPO, 'options', rel)) as f:
            assert f.read() == text, f'options/{rel} differs from make_ecma_options.py; rerun it'


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    """datasets/<Name> sample sets in every layout the option files use (built once)."""
    from datasets_prep.sample import make_sample
    root = tmp_path_factory.mktemp('samples')
    for folder, (task, like) in SAMPLES.items():
        make_sample(task, str(root / 'datasets' / folder), like=like, max_side=400, crop=96, step=96)
    for name in SR_SETS:
        make_sample('sr', str(root / 'datasets' / 'SR_benchmark' / name), like=name.lower(), max_side=192)
    return root


@pytest.mark.parametrize('path', FILES, ids=IDS)
def test_option_data_paths_exist_in_the_prepared_layout(path, sample_root, monkeypatch):
    opt = load(path)
    for dopt in opt['datasets'].values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            value = dopt.get(key)
            if key == 'dataroot_lq' and dopt['type'] == 'GaussianNoiseDataset':
                continue  # the noisy input is made on the fly
            assert value and value.startswith('datasets/'), f'{key} should be relative to datasets/: {value}'
    monkeypatch.chdir(sample_root)
    missing = [m for m in missing_dataset_paths(opt) if not any(f"'datasets/{n}'" in m for n in COPIED_FOLDERS)]
    assert missing == []


def test_gopro_option_file_trains_on_the_gopro_sample(sample_root):
    path = osp.join(REPO, 'options', 'table2_gopro', 'ECMA-T_GoPro_train.yml')
    res = run_cli(['train', '-opt', path, '--force_yml', 'num_gpu=0', 'network_g:width=8', 'train:total_iter=2',
                   'datasets:train:gt_size=32', 'datasets:train:batch_size_per_gpu=2',
                   'datasets:train:num_worker_per_gpu=0', 'logger:print_freq=1', 'logger:use_tb_logger=false',
                   'val:val_freq=2', 'network_g:large_kernel_mode=fft'], cwd=sample_root)
    assert res.returncode == 0, res.stderr[-3000:]
    log = open(glob.glob(str(sample_root / 'experiments/ECMA-T_GoPro/train_*.log'))[0]).read()
    assert 'iter:       2' in log and '# psnr:' in log
