"""IMDN with the authors' checkpoints, run through ``basicsr test`` with our option files.

The option files point at ``datasets/SR_benchmark`` and ``pretrained/`` for users; here they are
re-pointed at ../shared (data and weights) in a temporary copy, and ``basicsr test`` runs in a
temporary folder. On the shared 2-core CPU the x4 Set5 check takes 10-30 s (the network compute, not
the start-up, dominates); x4 Set14 + B100 and the x2 / x3 checks take several minutes and run only with
``ECMA_SLOW_TESTS=1``. Set14's 1-channel bridge.png is checked separately (it must reach the network
and the metric as a 3-channel image).
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import shared_path

from ecma_basicsr.archs.imdn_arch import IMDN
from ecma_basicsr.archs.state_dict_check import CheckpointMismatchError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPTIONS = {4: 'options/table5_sr_x4/IMDN_x4_test.yml', 3: 'options/baselines_extra/IMDN_x3_test.yml',
           2: 'options/baselines_extra/IMDN_x2_test.yml'}
# PSNR-Y (dB): ../shared/data/SOURCES.md (independent re-measurement) and the IMDN paper / ECMA Table 5.
MEASURED = {4: dict(Set5=32.210, Set14=28.582, B100=27.561), 3: dict(Set5=34.360, Set14=30.322, B100=29.095),
            2: dict(Set5=37.996, Set14=33.627, B100=32.189)}
PAPER = {4: dict(Set5=32.21, Set14=28.58, B100=27.56), 3: dict(Set5=34.36, Set14=30.32, B100=29.09),
         2: dict(Set5=38.00, Set14=33.63, B100=32.19)}
TOL = 0.05
SLOW = pytest.mark.skipif(os.environ.get('ECMA_SLOW_TESTS') != '1',
                          reason='several minutes on CPU; set ECMA_SLOW_TESTS=1 to run')


def _checkpoint(scale):
    return torch.load(shared_path('weights', f'IMDN_x{scale}.pth'), map_location='cpu', weights_only=True)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_published_checkpoints_load_strictly(scale):
    sd = _checkpoint(scale)
    assert all(k.startswith('module.') for k in sd)
    net = IMDN(upscale=scale)
    net.load_state_dict(sd)  # strict; the 'module.' prefix is dropped
    with torch.no_grad():
        assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 7 * scale, 9 * scale)


def test_checkpoint_of_another_scale_names_the_scale():
    with pytest.raises(CheckpointMismatchError, match=r'trained for upscale=3 \(this network has upscale=4\)'):
        IMDN(upscale=4).load_state_dict(_checkpoint(3))


def _write_option(tmp_path, scale, sets, weights=None):
    """Our option file, re-pointed at ../shared, restricted to ``sets``."""
    data = shared_path('data')
    opt = yaml.safe_load(open(osp.join(REPO, OPTIONS[scale])))
    datasets = {}
    for key, d in opt['datasets'].items():
        if d['name'] in sets:
            for k in ('dataroot_gt', 'dataroot_lq'):
                assert d[k].startswith('datasets/SR_benchmark/')
                d[k] = d[k].replace('datasets/SR_benchmark', data)
            datasets[key] = d
    opt['datasets'] = datasets
    opt['path']['pretrain_network_g'] = weights or shared_path('weights', f'IMDN_x{scale}.pth')
    opt['num_gpu'] = 0
    path = tmp_path / 'opt.yml'
    path.write_text(yaml.safe_dump(opt))
    return path, opt['name']


def _basicsr_test(tmp_path, option):
    return subprocess.run([sys.executable, '-m', 'ecma_basicsr.cli', 'test', '-opt', str(option)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800)


def _psnr_from_log(tmp_path, name):
    logs = glob.glob(str(tmp_path / 'results' / name / f'test_{name}_*.log'))
    assert len(logs) == 1, logs
    text = open(logs[0]).read()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'Validation (\S+)\s+# psnr: ([0-9.]+)', text)}


@pytest.mark.parametrize('scale,sets', [
    pytest.param(4, ('Set5',), id='x4-Set5'),
    pytest.param(4, ('Set14', 'B100'), id='x4-Set14-B100', marks=SLOW),
    pytest.param(3, ('Set5', 'Set14', 'B100'), id='x3', marks=SLOW),
    pytest.param(2, ('Set5', 'Set14', 'B100'), id='x2', marks=SLOW),
])
def test_basicsr_test_reproduces_published_psnr(tmp_path, scale, sets):
    option, name = _write_option(tmp_path, scale, sets)
    proc = _basicsr_test(tmp_path, option)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    psnr = _psnr_from_log(tmp_path, name)
    assert set(psnr) == set(sets), psnr
    for s in sets:
        assert abs(psnr[s] - MEASURED[scale][s]) <= TOL, (s, psnr[s], MEASURED[scale][s])
        assert abs(psnr[s] - PAPER[scale][s]) <= TOL, (s, psnr[s], PAPER[scale][s])


def test_gray_set14_image_is_read_as_three_channels(tmp_path):
    """bridge.png is 1-channel: BasicSR's PairedImageDataset decodes it as colour (3 equal channels)."""
    import cv2
    from basicsr.data import build_dataset
    gt_path = shared_path('data', 'Set14', 'HR', 'bridge.png')
    assert cv2.imread(gt_path, cv2.IMREAD_UNCHANGED).ndim == 2  # the file really is gray
    option, _ = _write_option(tmp_path, 4, ('Set14',))
    d = dict(yaml.safe_load(option.read_text())['datasets']['test_2'], phase='test', scale=4)
    dataset = build_dataset(d)
    item = next(dataset[i] for i in range(len(dataset)) if dataset[i]['gt_path'].endswith('bridge.png'))
    assert item['gt'].shape[0] == 3 and item['lq'].shape[0] == 3
    assert torch.equal(item['gt'][0], item['gt'][1]) and torch.equal(item['gt'][1], item['gt'][2])
    assert item['gt'].shape[1:] == (item['lq'].shape[1] * 4, item['lq'].shape[2] * 4)


def test_basicsr_test_with_the_wrong_checkpoint_fails_clearly(tmp_path):
    option, _ = _write_option(tmp_path, 4, ('Set5',), weights=shared_path('weights', 'IMDN_x2.pth'))
    proc = _basicsr_test(tmp_path, option)
    assert proc.returncode != 0
    assert 'basicsr test: error:' in proc.stderr and 'Traceback' not in proc.stderr
    assert 'upsampler.0.weight: (12, 64, 3, 3) vs (48, 64, 3, 3)' in proc.stderr
    assert 'trained for upscale=2' in proc.stderr


def test_presets_give_the_published_parameter_counts():
    from ecma_basicsr.archs.imdn_arch import PRESETS
    for name, preset in PRESETS.items():
        net = IMDN(**preset.kwargs)
        assert round(sum(p.numel() for p in net.parameters()) / 1e3) == preset.params / 1e3, name
        assert net.upscale == preset.scale and net.in_channels == 3
