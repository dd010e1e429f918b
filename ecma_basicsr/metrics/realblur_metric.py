"""RealBlur-J / RealBlur-R scoring as the benchmark's authors do it (ECMA paper Sec. 4.1, Table 4).

RealBlur's ground truths come from a second camera, so a restored image and its ground truth differ by a
small geometric and photometric misalignment. The benchmark's evaluation (Rim et al., "Real-World Blur
Dataset for Learning and Benchmarking Deblurring Algorithms", ECCV 2020; ``evaluation_RealBlur_ecc.py`` in
github.com/rimchang/RealBlur) therefore scores each image after removing it, and Table 4's numbers (taken
from [7, 48], which use that script) are only comparable with scores computed the same way:

1. **Intensity matching.** The restored image z (RGB in [0, 1]) is scaled by the least-squares factor
   ``sum(x * z) / sum(z * z)`` against the ground truth x, one factor for all channels.
2. **ECC alignment.** OpenCV's ``findTransformECC`` fits a homography from the gray ground truth (template)
   to the gray scaled image, starting from the identity, 100 iterations, epsilon 0, Gaussian pre-filter 5.
   The scaled image is warped onto the ground truth (bicubic, reflected border); a ones image warped the
   same way (nearest, zero border) is the valid region. Both images are multiplied by it.
3. **PSNR** over the valid region: MSE = sum of squared differences / number of valid values, peak 1.
4. **SSIM**: Gaussian-window SSIM (sigma 1.5, population covariances, data range 1) of the two masked
   images; its map is zeroed outside the valid region, the 5-pixel border (half the 11-pixel window) is
   dropped, each channel is averaged over its valid pixels, then the channels are averaged.

Registered for option files as ``type: calculate_realblur_psnr`` and ``type: calculate_realblur_ssim``
(``options/table4_realblur/*_test.yml``). BasicSR hands a metric the uint8 BGR output of ``tensor2img`` and
the ground truth, so the functions take BGR images in [0, 255] (uint8 or float) and convert them. The
alignment is computed once per image pair and shared by the two metrics (BasicSR calls them one after the
other with the same arrays). Where ECC does not converge (OpenCV raises), the script would stop; we log a
warning and score the intensity-matched image unaligned, so one hard image does not end a test run.
"""
import hashlib
import math

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

ECC_ITERATIONS = 100
ECC_EPS = 0.0
ECC_GAUSS_FILT = 5
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
# half the Gaussian window: scipy's radius for sigma 1.5 truncated at 3.5 sigma, as skimage uses it
SSIM_PAD = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)

_last = {}  # one entry: the alignment of the last image pair (PSNR and SSIM are called on the same pair)


def _rgb01(img, what, input_order):
    """BasicSR metric input (BGR, [0, 255], HWC or CHW) -> float32 RGB HWC in [0, 1]."""
    arr = np.asarray(img)
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f"RealBlur metric: input_order must be 'HWC' or 'CHW', got '{input_order}'.")
    if arr.ndim == 3 and input_order == 'CHW':
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f'RealBlur metric: the {what} must be a 3-channel colour image, got shape {arr.shape}. '
                         'RealBlur-J/-R are RGB sets; check the network output and the dataset.')
    return np.ascontiguousarray(arr[..., ::-1], dtype=np.float32) / 255.


def intensity_match(restored, gt):
    """Scale ``restored`` by the least-squares factor that best matches ``gt`` (step 1)."""
    denom = float(np.sum(restored.astype(np.float64) ** 2))
    if denom == 0:  # an all-black output: no factor improves it
        return restored
    return restored * np.float32(float(np.sum(gt.astype(np.float64) * restored)) / denom)


def ecc_homography(restored, gt):
    """Homography mapping ``gt`` pixel coordinates into ``restored`` (step 2), or None if ECC fails."""
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
    try:
        _, warp = cv2.findTransformECC(cv2.cvtColor(gt, cv2.COLOR_RGB2GRAY), cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY),
                                       warp, cv2.MOTION_HOMOGRAPHY, criteria, None, ECC_GAUSS_FILT)
    except cv2.error:
        return None
    return warp


def realblur_align(restored, gt):
    """Intensity-match and ECC-align ``restored`` to ``gt`` (float32 RGB HWC in [0, 1], same size).

    Returns:
        tuple: (aligned restored, ground truth, valid-region mask, homography or None when ECC failed),
        the first two already multiplied by the mask (all float32 H x W x 3).
    """
    _check_same_size(restored, gt)
    scaled = intensity_match(restored, gt)
    warp = ecc_homography(scaled, gt)
    h, w = gt.shape[:2]
    if warp is None:
        from basicsr.utils import get_root_logger
        get_root_logger().warning('RealBlur metric: ECC alignment did not converge for an image; it is scored '
                                  'intensity-matched but unaligned.')
        return scaled, gt, np.ones_like(gt), None
    aligned = cv2.warpPerspective(scaled, warp, (w, h), flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpPerspective(np.ones_like(scaled), warp, (w, h), flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return aligned * mask, gt * mask, mask, warp


def _check_same_size(restored, gt):
    if restored.shape != gt.shape:
        shape = lambda a: 'x'.join(map(str, a.shape))  # noqa: E731
        raise ValueError(f'RealBlur metric: the restored image is {shape(restored)} but the ground truth is '
                         f'{shape(gt)}; both must have the same size (check the dataset pairs and that the '
                         'network crops its padding).')


def masked_psnr(aligned, gt, mask):
    """PSNR (peak 1) over the valid region (step 3); inf when the images agree there."""
    err = float(np.sum((gt.astype(np.float64) - aligned) ** 2)) / float(np.sum(mask, dtype=np.float64))
    return math.inf if err == 0 else 10 * math.log10(1.0 / err)


def masked_ssim(aligned, gt, mask):
    """SSIM averaged over the valid region, border of half a window dropped (step 4)."""
    from skimage.metrics import structural_similarity
    _, smap = structural_similarity(gt, aligned, channel_axis=2, gaussian_weights=True, sigma=SSIM_SIGMA,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    p = SSIM_PAD
    smap = (smap * mask)[p:-p, p:-p]
    valid = mask[p:-p, p:-p].sum(axis=(0, 1), dtype=np.float64)
    return float(np.mean(smap.sum(axis=(0, 1), dtype=np.float64) / valid))


def _aligned_pair(img, img2, input_order):
    img, img2 = np.asarray(img), np.asarray(img2)
    _check_same_size(img, img2)
    digest = hashlib.blake2b(digest_size=16)
    for a in (img, img2):
        digest.update(f'{a.shape}{a.dtype}{input_order}'.encode())
        digest.update(np.ascontiguousarray(a).data)
    key = digest.hexdigest()
    if _last.get('key') != key:
        _last.clear()
        _last.update(key=key, value=realblur_align(_rgb01(img, 'restored image', input_order),
                                                   _rgb01(img2, 'ground truth', input_order)))
    return _last['value']


def _check_options(kwargs):
    """Accept BasicSR's generic metric keys only where they mean what RealBlur scoring does."""
    crop, y = kwargs.pop('crop_border', 0), kwargs.pop('test_y_channel', False)
    if crop or y:
        raise ValueError('RealBlur metric: the benchmark scores the whole aligned RGB image; remove crop_border / '
                         'test_y_channel from this metric in the option file (or set them to 0 / false).')
    if kwargs:
        raise ValueError(f"RealBlur metric: unknown option(s) {', '.join(sorted(kwargs))}; valid: input_order.")


def _prepared(img, img2, input_order, kwargs):
    """The option check, then (aligned output, ground truth, valid mask) as both metrics score them."""
    _check_options(kwargs)
    return _aligned_pair(img, img2, input_order)[:3]


@METRIC_REGISTRY.register()
def calculate_realblur_psnr(img, img2, input_order='HWC', **kwargs):
    """RealBlur PSNR (dB) of ``img`` (restored) against ``img2`` (ground truth), BGR in [0, 255].

    Intensity matching and ECC homography alignment first; see the module docstring.
    """
    return masked_psnr(*_prepared(img, img2, input_order, kwargs))


@METRIC_REGISTRY.register()
def calculate_realblur_ssim(img, img2, input_order='HWC', **kwargs):
    """RealBlur SSIM of ``img`` (restored) against ``img2`` (ground truth), BGR in [0, 255].

    Intensity matching and ECC homography alignment first; see the module docstring.
    """
    return masked_ssim(*_prepared(img, img2, input_order, kwargs))
