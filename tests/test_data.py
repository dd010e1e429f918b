"""GaussianNoiseDataset: the seeded, unclipped test protocol; training crops; reference figure."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr
from conftest import shared_path


def build(root, phase='test', **extra):
    return build_dataset(dict(name='noise', type='GaussianNoiseDataset', dataroot_gt=str(root),
                              io_backend={'type': 'disk'}, sigma=25, phase=phase, **extra))


def write_images(root, n=2, size=40):
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / f'im{i}.png'), rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8))


def test_test_noise_is_the_seeded_unclipped_protocol(tmp_path):
    write_images(tmp_path)
    item = build(tmp_path)[1]
    clean = cv2.imread(str(tmp_path / 'im1.png'))[:, :, ::-1].astype(np.float32) / 255.
    expected = clean.transpose(2, 0, 1) + np.random.RandomState(0).normal(0, 25 / 255., clean.shape).transpose(2, 0, 1)
    assert np.allclose(item['lq'].numpy(), expected, atol=1e-6)
    assert item['lq'].min() < 0 or item['lq'].max() > 1  # not clipped
    assert np.array_equal(build(tmp_path)[1]['lq'].numpy(), item['lq'].numpy())  # same every run


def test_train_crops_and_fresh_noise(tmp_path):
    write_images(tmp_path)
    ds = build(tmp_path, phase='train', gt_size=16, use_hflip=True, use_rot=True)
    a, b = ds[0], ds[0]
    assert a['lq'].shape == (3, 16, 16) and a['gt'].shape == (3, 16, 16)
    assert not np.array_equal((a['lq'] - a['gt']).numpy(), (b['lq'] - b['gt']).numpy())
    with pytest.raises(ValueError, match='smaller than gt_size'):
        build(tmp_path, phase='train', gt_size=64)[0]
    with pytest.raises(ValueError, match="needs a 'sigma'"):
        build_dataset(dict(name='x', type='GaussianNoiseDataset', dataroot_gt=str(tmp_path),
                           io_backend={'type': 'disk'}, phase='test'))


def test_identity_psnr_on_bsd68_matches_the_noise_level():
    """Noisy input vs clean at sigma 25 on gray BSD68: 20*log10(255/25) = 20.17 dB before rounding."""
    root = shared_path('data', 'BSD68')
    ds = build(root, in_ch=1)
    psnrs = []
    for i in range(len(ds)):
        item = ds[i]
        lq = np.clip(item['lq'].numpy()[0], 0, 1) * 255
        psnrs.append(calculate_psnr(lq[..., None], item['gt'].numpy()[0][..., None] * 255, crop_border=0))
    assert len(glob.glob(osp.join(root, '*.png'))) == len(ds) == 68
    assert 20.1 < float(np.mean(psnrs)) < 20.9  # clipping for display lifts it a little above 20.17
