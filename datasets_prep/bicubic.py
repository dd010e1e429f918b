"""MATLAB-exact bicubic downscaling of uint8 images, for the SR low-resolution inputs.

The kernel, support and border handling are basicsr's (``basicsr.utils.matlab_functions``:
``calculate_weights_indices`` with the antialiased cubic kernel and symmetric padding), so this
is ``basicsr.utils.matlab_functions.imresize``. What we add is MATLAB's behaviour for ``uint8``
input, which the published LR images of Set5/Set14/B100 were made with: MATLAB resizes the rows
first, **rounds (halves away from zero) and clips the intermediate image to uint8**, then resizes
the columns and rounds again. basicsr's ``imresize`` keeps the intermediate in float, which
leaves about 15% of the LR pixels one grey level off and up to 12 levels off at clipped edges
(Set14 ``ppt3``); numpy's round-half-to-even leaves another 0.7% off at x2/x4. With both
MATLAB rules, our LR images of Set5 and Set14 equal the published ones pixel for pixel at x2, x3
and x4 (tested against ``../shared/data``).
"""
import numpy as np

_WEIGHTS = {}


def load_basicsr():
    """Import ``basicsr.utils.matlab_functions`` (all of basicsr) now and return it.

    Call it in the parent before starting ``--workers`` processes: forked workers then inherit
    the loaded modules instead of each paying the several-second import. This does not import
    ``ecma_basicsr``: basicsr 1.4.2 imports with current torchvision through the start-up hook that
    installing the project puts into site-packages (``ecma_basicsr/import_hook.py``).

    Raises:
        PrepError: basicsr cannot be imported; the message says how to install it.
    """
    try:
        from basicsr.utils import matlab_functions
    except ImportError as err:
        from .common import PrepError
        if getattr(err, 'name', None) == 'torchvision.transforms.functional_tensor':
            fix = ('basicsr 1.4.2 needs the start-up hook this project installs for current torchvision: run '
                   "pip install -e . (or pip install .) in the project's folder, in this Python environment")
        else:
            fix = "install the project with its dependencies: pip install -e . in the project's folder"
        raise PrepError(f'The SR commands need basicsr (its MATLAB bicubic weights), but importing it failed '
                        f'({type(err).__name__}: {err}): {fix}.') from err
    return matlab_functions


def _weights(in_len, factor):
    """basicsr's weights and 0-based indices into the symmetrically padded axis (cached)."""
    key = (in_len, factor)
    if key not in _WEIGHTS:
        calculate_weights_indices = load_basicsr().calculate_weights_indices
        # Integer ceil: ceil(in_len * (1/3)) in floating point can land one pixel off.
        out_len = -(-in_len // factor)
        weights, indices, sym_s, sym_e = calculate_weights_indices(in_len, out_len, 1.0 / factor, 'cubic', 4,
                                                                   True)
        _WEIGHTS[key] = (weights.double().numpy(), indices.long().numpy(), sym_s, max(sym_e, 0))
    return _WEIGHTS[key]


def _round_half_up(x):
    # MATLAB rounds halves away from zero; numpy's round goes to even. With a factor of 2 or 4 the
    # cubic weights are dyadic, exact .5 values are common, and the difference is visible.
    return np.clip(np.floor(x + 0.5), 0, 255)


def _resize_axis0(img, factor, rounding):
    weights, indices, sym_s, sym_e = _weights(img.shape[0], factor)
    parts = [img[:sym_s][::-1], img]
    if sym_e:
        parts.append(img[img.shape[0] - sym_e:][::-1])
    padded = np.concatenate(parts, axis=0)
    out = np.zeros((weights.shape[0],) + img.shape[1:], np.float64)
    # One tap at a time keeps memory at one output-sized array (a 2K DIV2K image has ~10 taps).
    shape = (-1,) + (1,) * (img.ndim - 1)
    for t in range(weights.shape[1]):
        out += weights[:, t].reshape(shape) * padded[indices[:, t]]
    if rounding:
        out = _round_half_up(out)
    return out


def bicubic_downscale(img, scale, matlab_uint8=True):
    """Downscale by an integer factor with MATLAB's ``imresize(img, 1/scale, 'bicubic')``.

    Args:
        img (numpy.ndarray): uint8 image, (h, w) or (h, w, c); channel order does not matter.
        scale (int): Downscaling factor (2, 3, 4, ...). The output is ``ceil(h/scale) x ceil(w/scale)``;
            mod-crop the input first to get exactly h/scale.
        matlab_uint8 (bool): Round and clip the intermediate image to uint8 as MATLAB does for
            uint8 input (default). False gives basicsr's float ``imresize`` rounded once.

    Returns:
        numpy.ndarray: uint8 image with the same number of dimensions as ``img``.
    """
    if img.dtype != np.uint8:
        raise TypeError(f'bicubic_downscale expects a uint8 image, got {img.dtype}.')
    if int(scale) != scale or scale < 1:
        raise ValueError(f'scale must be a positive integer, got {scale}.')
    x = img.astype(np.float64)
    scale = int(scale)
    x = _resize_axis0(x, scale, matlab_uint8)
    x = np.swapaxes(_resize_axis0(np.swapaxes(x, 0, 1), scale, matlab_uint8), 0, 1)
    return _round_half_up(x).astype(np.uint8)


def mod_crop(img, mod):
    """Crop the bottom/right so that height and width are multiples of ``mod`` (BasicSR's mod_crop)."""
    h, w = img.shape[:2]
    return img[:h - h % mod, :w - w % mod]
