"""RealBlur scoring (``ecma_basicsr/metrics/realblur_metric.py``): intensity matching + ECC homography, then
PSNR / SSIM over the valid region, registered as BasicSR metrics and used by the Table 4 test files."""
import glob
import logging
import math
import os.path as osp

import cv2
import numpy as np
import pytest
import yaml
from basicsr.metrics import calculate_metric, calculate_psnr, calculate_ssim
from helpers import smooth_image

from ecma_basicsr.metrics import realblur_metric as rb

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def scene(seed=0, h=160, w=192):
    """A ground truth and a "restored" image with a smooth residual (a slight blur), both uint8 BGR."""
    rng = np.random.default_rng(seed)
    gt = smooth_image(rng, h, w)
    restored = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 1.0)
    return gt, restored


def warp(img, homography, gain):
    """Warp a float image by a homography (bicubic, reflected border), scale its intensity, round to uint8."""
    h, w = img.shape[:2]
    out = cv2.warpPerspective(img, np.float32(homography), (w, h), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT)
    return np.round(np.clip(out * gain, 0, 255)).astype(np.uint8)


def small_homography():
    a = np.deg2rad(0.3)  # 0.3 degree rotation, (0.75, -0.5) px shift, slight perspective
    return [[np.cos(a), np.sin(a), 0.75], [-np.sin(a), np.cos(a), -0.5], [2e-5, -1e-5, 1.0]]


def u8(img):
    return np.round(img).astype(np.uint8)


@pytest.mark.parametrize('seed', [0, 1])
def test_known_warp_and_gain_are_undone(seed):
    gt, restored = scene(seed)
    moved = warp(restored, small_homography(), gain=0.8)
    official = rb.calculate_realblur_psnr(moved, gt), rb.calculate_realblur_ssim(moved, gt)
    unwarped = rb.calculate_realblur_psnr(u8(restored), gt), rb.calculate_realblur_ssim(u8(restored), gt)
    plain = calculate_psnr(moved, gt, 0), calculate_ssim(moved, gt, 0)
    # measured (seed 0): official 38.31 dB / 0.9956, unwarped copy 38.29 / 0.9950, plain 17.47 / 0.8377
    assert official[0] > plain[0] + 15
    assert official[1] > plain[1] + 0.1
    assert abs(official[0] - unwarped[0]) < 0.5
    assert abs(official[1] - unwarped[1]) < 0.002


def test_recovered_homography_is_the_applied_one():
    gt, restored = scene(0)
    h = np.float32(small_homography())
    _, _, mask, found = rb.realblur_align(rb._rgb01(warp(restored, h, 0.8), 'x', 'HWC'), rb._rgb01(gt, 'x', 'HWC'))
    # with WARP_INVERSE_MAP the fitted matrix maps ground-truth coordinates into the moved image, i.e. it is h:
    # compare where both send the pixels of the image (sub-pixel agreement)
    ys, xs = np.mgrid[0:160:8, 0:192:8]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)[None]
    moved_pts = cv2.perspectiveTransform(pts, h), cv2.perspectiveTransform(pts, found.astype(np.float32))
    assert np.abs(moved_pts[0] - moved_pts[1]).max() < 0.1
    assert 0.97 < mask.mean() < 1.0  # the rows / columns the shift brought in from outside are not scored


def test_gain_alone_is_matched_exactly():
    gt, restored = scene(0)
    plain_gain = rb.calculate_realblur_psnr(u8(restored * 0.7), gt)
    assert abs(plain_gain - rb.calculate_realblur_psnr(u8(restored), gt)) < 0.1
    assert calculate_psnr(u8(restored * 0.7), gt, 0) < 20


def test_identical_images():
    gt, _ = scene(3)
    assert rb.calculate_realblur_psnr(gt, gt) == math.inf
    assert rb.calculate_realblur_ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_mismatched_sizes_are_a_clear_error():
    gt, restored = scene(0)
    with pytest.raises(ValueError, match=r'restored image is 160x188x3 but the ground truth is 160x192x3'):
        rb.calculate_realblur_psnr(u8(restored)[:, :188], gt)
    with pytest.raises(ValueError, match='3-channel colour image'):
        rb.calculate_realblur_ssim(gt[..., 0], gt[..., 0])


def test_masked_psnr_and_ssim_use_only_the_valid_region():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.2, 0.8, (40, 50, 3)).astype(np.float32)
    restored = gt + 0.01
    mask = np.ones_like(gt)
    mask[:, :10] = 0
    restored[:, :10] = 0  # garbage where the mask is 0 must not count
    assert rb.masked_psnr(restored * mask, gt * mask, mask) == pytest.approx(40.0, abs=1e-4)
    assert rb.masked_ssim(gt * mask, gt * mask, mask) == pytest.approx(1.0, abs=1e-9)


def test_alignment_is_shared_by_psnr_and_ssim(monkeypatch):
    calls = []
    real = rb.ecc_homography
    monkeypatch.setattr(rb, 'ecc_homography', lambda *a: calls.append(1) or real(*a))
    gt, restored = scene(4)
    moved = warp(restored, small_homography(), 0.9)
    rb.calculate_realblur_psnr(moved, gt)
    rb.calculate_realblur_ssim(moved, gt)
    assert len(calls) == 1
    rb.calculate_realblur_psnr(u8(restored), gt)
    assert len(calls) == 2


def test_ecc_failure_scores_unaligned_with_a_warning():
    flat = np.full((64, 64, 3), 128, np.uint8)  # no texture: OpenCV's ECC raises
    noisy = np.clip(flat + np.random.default_rng(0).normal(0, 2, flat.shape), 0, 255).astype(np.uint8)
    assert rb.ecc_homography(rb._rgb01(noisy, 'x', 'HWC'), rb._rgb01(flat, 'x', 'HWC')) is None
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')  # BasicSR's root logger does not propagate to pytest's caplog
    logger.addHandler(handler)
    try:
        value = rb.calculate_realblur_psnr(noisy, flat)
    finally:
        logger.removeHandler(handler)
    assert math.isfinite(value) and value > 40
    assert any('did not converge' in r.getMessage() for r in records)


def test_registered_for_option_files_and_used_by_table4():
    gt, restored = scene(0)
    data = dict(img=u8(restored), img2=gt)
    files = sorted(glob.glob(osp.join(REPO, 'options', 'table4_realblur', '*_test.yml')))
    assert len(files) == 2
    for path in files:
        with open(path) as f:
            metrics = yaml.safe_load(f)['val']['metrics']
        assert metrics['psnr']['type'] == 'calculate_realblur_psnr'
        assert metrics['ssim']['type'] == 'calculate_realblur_ssim'
        assert calculate_metric(data, metrics['psnr']) == pytest.approx(rb.calculate_realblur_psnr(u8(restored), gt))
    with pytest.raises(ValueError, match='remove crop_border'):
        calculate_metric(data, {'type': 'calculate_realblur_psnr', 'crop_border': 4})
    with pytest.raises(ValueError, match="unknown option.*'?better'?"):
        calculate_metric(data, {'type': 'calculate_realblur_ssim', 'better': 'higher'})
