"""Small building blocks shared by several registered networks.

What lives here is deliberately generic: padding an image to a multiple of a window / down-sampling
factor and cropping it back (every network in this package accepts any H x W), and stochastic depth
for the transformer baselines. Network-specific blocks stay in their ``*_arch.py`` (e.g. ``NAFBlock`` and
``LayerNorm2d`` are in :mod:`.nafnet_arch`).
"""
import math

import torch.nn.functional as F
from torch import nn


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def lcm(*values):
    """Least common multiple of positive integers (``None`` entries are ignored)."""
    out = 1
    for v in values:
        if v:
            out = out * v // math.gcd(out, v)
    return out


def pad_to_multiple(x, multiple, mode='constant'):
    """Pad an ``(N, C, H, W)`` tensor at the bottom/right so H and W are multiples of ``multiple``.

    Args:
        x (Tensor): Input of shape ``(N, C, H, W)``.
        multiple (int | tuple[int, int]): Required multiple for (H, W).
        mode (str): ``'constant'`` (zeros), ``'reflect'`` or ``'replicate'``. Reflection needs
            the pad to be smaller than the image side; for tiny inputs (e.g. a 1 x 1 image padded to
            8 x 8) we fall back to ``'replicate'`` because reflection is undefined there.

    Returns:
        tuple: The padded tensor and the original ``(H, W)``, to be passed to :func:`crop_to`.
    """
    mh, mw = _pair(multiple)
    h, w = x.shape[-2:]
    ph, pw = (-h) % mh, (-w) % mw
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == 'reflect' and (ph >= h or pw >= w):
        mode = 'replicate'
    if mode == 'constant':
        x = F.pad(x, (0, pw, 0, ph))
    else:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x, size, scale=1):
    """Crop the top-left ``size * scale`` region (undoes :func:`pad_to_multiple`)."""
    h, w = size
    return x[..., :h * scale, :w * scale]


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training.

    Args:
        drop_prob (float): Probability of dropping the branch. Kept samples are rescaled by
            ``1 / (1 - drop_prob)`` so the expected value is unchanged.
    """

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'


def init_transformer_weights(m):
    """ViT/Swin initialisation, used with ``module.apply``: truncated normal (std 0.02) for
    Linear weights, zero biases, unit LayerNorm scales."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# How constructors name the image channels: ours (ECMA: in_ch; GRL, Hi-IR, IRNeXt, IMDN: in_channels) and the
# authors' (NAFNet, M3SNet: img_channel; IMDN: in_nc), BasicSR's (EDSR, RCAN: num_in_ch; SwinIR: in_chans).
IN_CHANNEL_ARGS = ('in_ch', 'in_channels', 'img_channel', 'in_nc', 'num_in_ch', 'in_chans')


def image_channels(net):
    """(channels of the images ``net`` takes, the constructor argument that sets them).

    Every network of this package has an ``in_channels`` attribute; for BasicSR's own networks the
    first convolution's input channels are used.
    """
    import inspect
    params = inspect.signature(type(net).__init__).parameters
    arg = next((a for a in IN_CHANNEL_ARGS if a in params), IN_CHANNEL_ARGS[0])
    channels = getattr(net, 'in_channels', None)
    if channels is None:
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else None
    return channels, arg
