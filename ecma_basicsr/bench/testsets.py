"""Test sets for ``basicsr bench`` and the evaluation protocol of each task (as the papers score them).

A test-set spec is ``NAME=TASK:PATH``:

* ``sr``: ``PATH/HR/*.png`` (or the images directly in ``PATH``) and, when present, the published
  LR images ``PATH/LR_bicubic/X{s}/<name>x{s}.png``; otherwise the LR is made with MATLAB-exact
  bicubic (:func:`datasets_prep.bicubic.bicubic_downscale`) from the HR mod-cropped to the scale.
  PSNR/SSIM on the Y channel (MATLAB ``rgb2ycbcr``), ``crop_border = scale``, the output rounded to
  uint8 first. The scale is each network's own; the reference row is **bicubic** (MATLAB bicubic
  upscaling of the LR). Only networks with scale > 1 are evaluated on it.
* ``deblur`` / ``denoise``: paired images with the same file names in ``PATH/{input,blur,lq,noisy}/``
  and ``PATH/{target,sharp,gt,clean}/`` (``PATH/test/...`` also works). RGB PSNR/SSIM, no crop.
  The reference row is **identity** (the degraded input itself).
* ``awgn<sigma>`` (e.g. ``awgn25``): clean images in ``PATH`` (or ``PATH/HR``) with additive Gaussian
  noise of sigma/255 on the [0, 1] image, ``numpy.random.RandomState(seed)`` re-seeded per image,
  the noisy input not clipped; RGB (or gray for gray networks) PSNR/SSIM, no crop. Reference row:
  identity (the noisy input, rounded for the metric like any output).

Metrics are BasicSR's own (``basicsr.metrics.calculate_psnr`` / ``calculate_ssim``) on uint8-range
BGR images, averaged over the images of the set.
"""
import glob
import os.path as osp
import re
from dataclasses import dataclass

import numpy as np

from . import BenchError

IMG_EXT = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
INPUT_DIRS = ('input', 'blur', 'lq', 'noisy')
TARGET_DIRS = ('target', 'sharp', 'gt', 'clean', 'groundtruth')
TASK_RE = re.compile(r'^(sr|deblur|denoise|awgn(\d+(?:\.\d+)?))$')


@dataclass
class TestSet:
    """One test set (JSON-serialisable). ``sigma`` only for awgn; ``limit`` caps the image count."""
    name: str
    task: str
    path: str
    sigma: float = None
    seed: int = 0
    limit: int = None

    @property
    def protocol(self):
        return 'sr' if self.task == 'sr' else 'rgb'

    def applies_to(self, scale):
        """Whether a network of this scale is evaluated on the set."""
        return (scale > 1) == (self.task == 'sr')

    def to_dict(self):
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def parse_testset(text, seed=0, limit=None):
    """``NAME=TASK:PATH`` -> :class:`TestSet` (checks the folder layout now, not mid-run)."""
    if '=' not in text or ':' not in text.split('=', 1)[1]:
        raise BenchError(f"--testset '{text}' must be NAME=TASK:PATH, e.g. Set5=sr:../shared/data/Set5, "
                         'GoPro=deblur:datasets/GoPro/test, CBSD68-25=awgn25:../shared/data/CBSD68.')
    name, rest = text.split('=', 1)
    task, path = rest.split(':', 1)
    m = TASK_RE.match(task.strip())
    if not m:
        raise BenchError(f"--testset '{text}': unknown task '{task}'. Use sr, deblur, denoise or awgn<sigma> "
                         '(e.g. awgn25).')
    ts = TestSet(name.strip(), 'awgn' if m.group(2) else m.group(1), path.strip(), seed=seed, limit=limit)
    if m.group(2):
        ts.sigma = float(m.group(2))
    if not osp.isdir(ts.path):
        raise BenchError(f"--testset {ts.name}: folder '{ts.path}' does not exist.")
    if ts.task == 'sr':
        _images(_hr_dir(ts.path), ts.name)
    elif ts.task == 'awgn':
        _images(_hr_dir(ts.path), ts.name)
    else:
        _pairs(ts.path, ts.name)
    return ts


def _images(folder, name):
    files = sorted(f for f in glob.glob(osp.join(folder, '*')) if f.lower().endswith(IMG_EXT))
    if not files:
        raise BenchError(f"test set {name}: no images ({', '.join(IMG_EXT)}) in '{folder}'.")
    return files


def _hr_dir(path):
    return osp.join(path, 'HR') if osp.isdir(osp.join(path, 'HR')) else path


def _find_dir(root, names):
    for base in (root, osp.join(root, 'test')):
        for name in names:
            if osp.isdir(osp.join(base, name)):
                return osp.join(base, name)
    return None


def _pairs(path, name):
    lq, gt = _find_dir(path, INPUT_DIRS), _find_dir(path, TARGET_DIRS)
    if not lq or not gt:
        raise BenchError(f"test set {name}: '{path}' needs an input folder ({'/'.join(INPUT_DIRS)}) and a target "
                         f"folder ({'/'.join(TARGET_DIRS)}) with the same file names.")
    gts = {osp.basename(f): f for f in _images(gt, name)}
    pairs = [(f, gts[osp.basename(f)]) for f in _images(lq, name) if osp.basename(f) in gts]
    if not pairs:
        raise BenchError(f"test set {name}: no file name is in both '{lq}' and '{gt}'.")
    return pairs


def read_image(path, channels=3):
    """uint8 BGR (H, W, 3) image, or (H, W, 1) gray when ``channels == 1``."""
    import cv2
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    img = cv2.imread(path, flag)
    if img is None:
        raise BenchError(f"cannot read image '{path}'.")
    return img[..., None] if img.ndim == 2 else img


def samples(ts, scale=1, channels=3):
    """Yield ``(name, degraded uint8-or-float BGR image, target uint8 BGR image)`` for one network scale.

    The degraded image is uint8 except for awgn, where it is the float32 noisy image in [0, 1]
    (not clipped), as the synthetic-denoising protocol feeds it to the network.
    """
    count = 0
    if ts.task == 'sr':
        from datasets_prep.bicubic import bicubic_downscale, mod_crop
        lr_dir = osp.join(ts.path, 'LR_bicubic', f'X{scale}')
        for hr_path in _images(_hr_dir(ts.path), ts.name):
            stem = osp.splitext(osp.basename(hr_path))[0]
            hr = read_image(hr_path, channels)
            lr_path = osp.join(lr_dir, f'{stem}x{scale}.png')
            if osp.isfile(lr_path):
                lr = read_image(lr_path, channels)
            else:
                lr = bicubic_downscale(mod_crop(hr, scale), scale)
                lr = lr[..., None] if lr.ndim == 2 else lr
            # BasicSR's PairedImageDataset at test time: crop GT to LR size x scale
            hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
            yield stem, lr, hr
            count += 1
            if ts.limit and count >= ts.limit:
                return
    elif ts.task == 'awgn':
        for path in _images(_hr_dir(ts.path), ts.name):
            clean = read_image(path, channels)
            rng = np.random.RandomState(ts.seed)
            noisy = clean.astype(np.float64) / 255.0 + rng.normal(0, ts.sigma / 255.0, clean.shape)
            yield osp.splitext(osp.basename(path))[0], noisy.astype(np.float32), clean
            count += 1
            if ts.limit and count >= ts.limit:
                return
    else:
        for lq_path, gt_path in _pairs(ts.path, ts.name):
            yield osp.splitext(osp.basename(lq_path))[0], read_image(lq_path, channels), read_image(gt_path, channels)
            count += 1
            if ts.limit and count >= ts.limit:
                return


def to_tensor(img):
    """BGR uint8 / float [0, 1] (H, W, C) -> RGB float (1, C, H, W)."""
    import torch
    x = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if x.shape[2] == 3:
        x = x[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def to_uint8(img):
    """Float [0, 1] BGR (H, W, C) -> uint8 the way BasicSR's ``tensor2img`` rounds (clip, *255, round)."""
    return (np.clip(img, 0, 1) * 255.0).round().astype(np.uint8)


def tensor_to_uint8(t):
    """RGB float (1, C, H, W) -> uint8 BGR (H, W, C), as ``basicsr.utils.tensor2img``."""
    from basicsr.utils import tensor2img
    img = tensor2img(t.detach().float().cpu(), rgb2bgr=True, min_max=(0, 1))
    return img[..., None] if img.ndim == 2 else img


def bicubic_upscale(lr, scale):
    """MATLAB bicubic upscaling (``basicsr.utils.matlab_functions.imresize``) of a uint8 image."""
    from basicsr.utils.matlab_functions import imresize
    up = imresize(lr.astype(np.float64) / 255.0, scale)
    return to_uint8(up)


def metrics(out, target, ts, scale):
    """(PSNR, SSIM) of uint8 ``out`` against uint8 ``target`` under the set's protocol."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    crop, y = (scale, True) if ts.task == 'sr' else (0, False)
    if out.shape != target.shape:
        raise BenchError(f'{ts.name}: output {out.shape} and target {target.shape} differ in size.')
    return (calculate_psnr(out, target, crop_border=crop, test_y_channel=y),
            calculate_ssim(out, target, crop_border=crop, test_y_channel=y))


def reference_scores(ts, scale=4, channels=3):
    """Mean (PSNR, SSIM) of the set's floor: bicubic for sr, the degraded input otherwise."""
    psnrs, ssims = [], []
    for _, degraded, target in samples(ts, scale, channels):
        if ts.task == 'sr':
            out = bicubic_upscale(degraded, scale)
        else:
            out = degraded if degraded.dtype == np.uint8 else to_uint8(degraded)
        p, s = metrics(out, target, ts, scale)
        psnrs.append(p)
        ssims.append(s)
    return float(np.mean(psnrs)), float(np.mean(ssims)), len(psnrs)


def evaluate(net, ts, scale, channels, device='cpu', deadline=None):
    """Mean (PSNR, SSIM, images) of ``net`` on ``ts``; stops early (returning what it has) at ``deadline``.

    Returns:
        tuple: (psnr, ssim, n_images, complete)
    """
    import time

    import torch
    psnrs, ssims = [], []
    complete = True
    for _, degraded, target in samples(ts, scale, channels):
        if deadline is not None and time.monotonic() > deadline:
            complete = False
            break
        with torch.inference_mode():
            out = net(to_tensor(degraded).to(device))
        expected = (degraded.shape[0] * scale, degraded.shape[1] * scale)
        if tuple(out.shape[-2:]) != expected:
            raise BenchError(f'{ts.name}: the network returned {tuple(out.shape[-2:])} for an input of '
                             f'{degraded.shape[:2]}, expected {expected} (scale {scale}); check upscale.')
        p, s = metrics(tensor_to_uint8(out), target, ts, scale)
        psnrs.append(p)
        ssims.append(s)
    if not psnrs:
        return None, None, 0, False
    return float(np.mean(psnrs)), float(np.mean(ssims)), len(psnrs), complete
