"""IRNeXt (Cui et al., ICML 2023), a convolutional U-Net baseline for the deblurring tables.

Implemented from the paper ("IRNeXt: Rethinking Convolutional Network Design for Image
Restoration"); the section and equation numbers below are the paper's.

* Sec. 3.1 / Fig. 3(a): a three-level U-shaped network of six ``CNNBlock`` s (widths C, 2C, 4C)
  with multiple inputs (the image at 1/2 and 1/4 resolution enter the encoder through ``ConvS``,
  Fig. 3(b), are concatenated and reduced by a 3x3 convolution) and multiple outputs (a 3x3
  convolution plus an image-level skip after the first two decoder ``CNNBlock`` s gives the
  1/4 and 1/2 resolution predictions; the last one gives the full-resolution image).
* Fig. 3(c): a ``CNNBlock`` is a stack of residual blocks (3x3 conv, GELU, 3x3 conv); the multi-scale
  module (MSM) sits inside the last one, between its two convolutions.
* Sec. 3.2, Eq. 1-2: MSM average-pools its input at rates 8, 4, 2; each branch adds the previous
  (coarser) branch upsampled x2, applies a local attention module (LAM), and all branches are
  upsampled to the input size, summed with the input and passed through a 3x3 convolution.
* Sec. 3.3, Eq. 3-7: LAM generates G groups of K x K attention weights with Tanh (not Softmax)
  from the globally pooled features, splits them into a low-pass (direct-current, 1/K^2 * E,
  Eq. 4 and App. C) and a high-pass part (Eq. 5), re-weights the high-pass part with learnable
  channel-wise parameters W initialised to 1 (filter modulation, Eq. 6) and aggregates each
  K x K neighbourhood with the resulting filters plus a residual (Eq. 7). G = 8, K = 3 (Sec. 4).
* Sec. 3.4, Eq. 8-10: the dual-domain loss over the three outputs lives in
  :mod:`ecma_basicsr.losses.irnext_loss`.

Readings of what the paper leaves open (each checked against the paper's parameter counts):

* Width C = 32, channels C/2C/4C, stride-2 3x3 convolutions down and stride-2 4x4 transposed
  convolutions up, GELU activations, ``ConvS`` channels C'/4, C'/2, C'/2, C' for a level of width
  C'. Table 7(b)->(c) adds only 0.10 M when LAM replaces the branch convolution, so the 3x3
  convolution of Eq. 3 *is* the branch convolution: LAM convolves its input, derives the
  attention weights from that result and aggregates that result (X in Eq. 7 is the output of
  the Conv3x3 of Eq. 3). No normalisation layer is used (none is mentioned).
* Residual blocks per ``CNNBlock`` count the MSM block, as in Table 13 ("the number includes the
  last one involving our MSM"). With that convention this implementation gives 13.20 M for 14
  blocks (Table 6 / Table 13 give 13.21 M; GoPro, variant ``'gopro'``), 14.75 M for 16 blocks
  (Table 13: 14.76 M; n = 15 of Sec. 4, variant ``'deblur'``) and 5.45 M for 4 blocks (Table 2:
  5.46 M; dehazing, n = 3, variant ``'dehaze'``). Three counts within 0.01 M support the readings
  above; the remaining 0.01 M is of the size of a few per-channel vectors or biases.
* Images are downsampled for the multi-input path with 2x2 averaging (the loss downsamples the
  targets the same way); upsampling inside MSM is bilinear (Eq. 1); LAM zero-pads its K x K
  aggregation like an ordinary convolution.
* Any H x W: the input is padded (reflect, or replicate when reflect is impossible) to a
  multiple of 32 (two U-Net downsamplings times the rate-8 pooling of MSM) and cropped back.

Outputs: ``forward`` returns the full-resolution image (what BasicSR validates). The three
outputs (1/4, 1/2, full, coarse to fine) are returned as a list when ``forward(x, return_all=True)``
is called, or in training mode when the network is built with ``return_all_train=True`` (the
option-file route: ``network_g: {type: IRNeXt, return_all_train: true}`` together with
``pixel_opt: {type: IRNeXtLoss}``). Evaluation (``net.eval()``) always returns the tensor, so
validation and EMA copies are unaffected. The low-resolution heads are only evaluated when their
outputs are returned. ``multi_output=False`` builds IRNeXt without them, for training with a
single-output loss (e.g. ECMA's L1 + FFTLoss recipe); their parameters (5.2 k at width 32) would
otherwise never be trained.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY

from ecma_basicsr.archs.arch_util import crop_to, pad_to_multiple
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

# Residual blocks per CNNBlock (MSM block included), Table 13 convention; see module docstring.
IRNEXT_VARIANTS = {
    'gopro': dict(width=32, num_blocks=14),   # Table 6: 13.21 M, 114.79 G
    'deblur': dict(width=32, num_blocks=16),  # Table 13 / n = 15 of Sec. 4: 14.76 M, 129.33 G
    'dehaze': dict(width=32, num_blocks=4),   # Table 2 (n = 3): 5.46 M
}


class LocalAttention(nn.Module):
    """Local attention module with filter modulation (LAM, Sec. 3.3, Eq. 3-7).

    Args:
        channels (int): Feature channels (a multiple of ``groups``).
        groups (int): Number of attention-weight groups G. Default: 8.
        kernel_size (int): Aggregation region K. Default: 3.
    """

    def __init__(self, channels, groups=8, kernel_size=3):
        super().__init__()
        if channels % groups:
            raise ValueError(f'LAM: channels ({channels}) must be a multiple of groups ({groups})')
        self.groups = groups
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)  # Conv3x3 of Eq. 3
        self.to_weights = nn.Conv2d(channels, groups * kernel_size ** 2, 1, bias=False)  # Conv1x1 of Eq. 3
        # W of Eq. 6: channel-wise, initialised to 1 so the module starts as plain Tanh attention
        self.modulation = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        k2 = self.kernel_size ** 2
        attn = torch.tanh(self.to_weights(F.adaptive_avg_pool2d(x, 1)))  # Eq. 3, (b, G*K*K, 1, 1)
        # Eq. 4-5: the low-pass filter keeps only the direct-current component, 1/K^2 * E (App. C)
        high = attn.view(b, self.groups, 1, k2) - 1.0 / k2
        # Eq. 6 per channel: weights are shared inside a group, W is channel-wise
        high = high.expand(b, self.groups, c // self.groups, k2).reshape(b, c, k2)
        kernel = high * self.modulation.view(1, c, 1) + 1.0 / k2
        # Eq. 7 as one grouped convolution: every (sample, channel) pair gets its own K x K filter
        out = F.conv2d(x.reshape(1, b * c, h, w), kernel.reshape(b * c, 1, self.kernel_size, self.kernel_size),
                       padding=self.kernel_size // 2, groups=b * c)
        return out.view(b, c, h, w) + x


class MultiScaleModule(nn.Module):
    """Multi-scale module (MSM, Sec. 3.2, Eq. 1-2): coarse-to-fine branches at rates 8, 4, 2.

    Args:
        channels (int): Feature channels.
        rates (tuple[int]): Average-pooling rates, coarsest first; each is half the previous.
        groups (int): LAM groups G.
        kernel_size (int): LAM region K.
    """

    def __init__(self, channels, rates=(8, 4, 2), groups=8, kernel_size=3):
        super().__init__()
        self.rates = tuple(rates)
        self.lams = nn.ModuleList(LocalAttention(channels, groups, kernel_size) for _ in self.rates)
        self.fuse = nn.Conv2d(channels, channels, 3, padding=1)  # Conv3x3 of Eq. 2

    def forward(self, x):
        size = x.shape[-2:]
        total, prev = x, None
        for rate, lam in zip(self.rates, self.lams):
            y = F.avg_pool2d(x, rate)
            if prev is not None:  # Eq. 1: X_{i-1} upsampled x2 joins the next, finer branch
                y = y + F.interpolate(prev, size=y.shape[-2:], mode='bilinear', align_corners=False)
            prev = lam(y)
            total = total + F.interpolate(prev, size=size, mode='bilinear', align_corners=False)
        return self.fuse(total)  # Eq. 2


class ResBlock(nn.Module):
    """Residual block of a CNNBlock (Fig. 3(c)); ``msm=True`` inserts MSM between the convolutions."""

    def __init__(self, channels, msm=False, groups=8, kernel_size=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.GELU()
        self.msm = MultiScaleModule(channels, groups=groups, kernel_size=kernel_size) if msm else nn.Identity()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.msm(self.act(self.conv1(x))))


class CNNBlock(nn.Sequential):
    """``num_blocks`` residual blocks, the last one with MSM (Fig. 3(c), Table 13 convention)."""

    def __init__(self, channels, num_blocks, groups=8, kernel_size=3):
        if num_blocks < 1:
            raise ValueError('CNNBlock needs at least one residual block (the MSM one)')
        super().__init__(*[ResBlock(channels, msm=(i == num_blocks - 1), groups=groups, kernel_size=kernel_size)
                           for i in range(num_blocks)])


class ConvS(nn.Module):
    """Shallow features of a downsampled input image (Fig. 3(b)): 3x3, 1x1, 3x3, 1x1 convolutions."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        q, h = max(1, out_channels // 4), max(1, out_channels // 2)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, q, 3, padding=1), nn.GELU(),
            nn.Conv2d(q, h, 1), nn.GELU(),
            nn.Conv2d(h, h, 3, padding=1), nn.GELU(),
            nn.Conv2d(h, out_channels, 1))

    def forward(self, x):
        return self.body(x)


@ARCH_REGISTRY.register()
class IRNeXt(CheckedLoadMixin, nn.Module):
    """IRNeXt: multi-input multi-output convolutional U-Net with MSM/LAM (ICML 2023).

    Args:
        variant (str | None): ``'gopro'`` (14 blocks, 13.21 M), ``'deblur'`` (16 blocks, 14.76 M) or
            ``'dehaze'`` (4 blocks, 5.46 M); explicit ``width`` / ``num_blocks`` override it.
        in_channels (int): Image channels. Default: 3.
        width (int): Channels C of the first level (levels use C, 2C, 4C). Default: 32.
        num_blocks (int): Residual blocks per CNNBlock, including the MSM block. Default: 14.
        groups (int): LAM groups G (Sec. 4). Default: 8.
        kernel_size (int): LAM region K (Sec. 4). Default: 3.
        return_all_train (bool): In training mode return ``[out_1/4, out_1/2, out_full]`` so that
            :class:`~ecma_basicsr.losses.irnext_loss.IRNeXtLoss` sees all outputs. Default: False.
        multi_output (bool): Build the 1/4 and 1/2 prediction heads (the paper's model). False gives
            a single-output IRNeXt for single-output losses (e.g. L1 + FFTLoss), without heads
            that would never be trained. Default: True.
    """

    def __init__(self, variant=None, in_channels=3, width=None, num_blocks=None, groups=8, kernel_size=3,
                 return_all_train=False, multi_output=True):
        super().__init__()
        cfg = dict(IRNEXT_VARIANTS['gopro'])
        if variant is not None:
            key = variant.lower()
            if key not in IRNEXT_VARIANTS:
                raise ValueError(f"Unknown IRNeXt variant '{variant}'. Choose one of: {', '.join(IRNEXT_VARIANTS)}.")
            cfg.update(IRNEXT_VARIANTS[key])
        width = cfg['width'] if width is None else width
        num_blocks = cfg['num_blocks'] if num_blocks is None else num_blocks
        if return_all_train and not multi_output:
            raise ValueError('IRNeXt: return_all_train needs multi_output=True (the low-resolution heads).')
        self.return_all_train = return_all_train
        self.multi_output = multi_output
        self.width, self.num_blocks = width, num_blocks
        c1, c2, c3 = width, width * 2, width * 4
        # two U-Net downsamplings, then MSM pools the 1/4 level by 8 and upsamples x2 per branch
        self.pad_multiple = 4 * 8

        self.shallow = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.enc1 = CNNBlock(c1, num_blocks, groups, kernel_size)
        self.down1 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GELU())
        self.convs2 = ConvS(in_channels, c2)
        self.merge2 = nn.Conv2d(2 * c2, c2, 3, padding=1)
        self.enc2 = CNNBlock(c2, num_blocks, groups, kernel_size)
        self.down2 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.GELU())
        self.convs3 = ConvS(in_channels, c3)
        self.merge3 = nn.Conv2d(2 * c3, c3, 3, padding=1)
        self.enc3 = CNNBlock(c3, num_blocks, groups, kernel_size)

        self.dec3 = CNNBlock(c3, num_blocks, groups, kernel_size)
        self.out3 = nn.Conv2d(c3, in_channels, 3, padding=1) if multi_output else None
        self.up3 = nn.Sequential(nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1), nn.GELU())
        self.reduce2 = nn.Sequential(nn.Conv2d(2 * c2, c2, 1), nn.GELU())
        self.dec2 = CNNBlock(c2, num_blocks, groups, kernel_size)
        self.out2 = nn.Conv2d(c2, in_channels, 3, padding=1) if multi_output else None
        self.up2 = nn.Sequential(nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.GELU())
        self.reduce1 = nn.Sequential(nn.Conv2d(2 * c1, c1, 1), nn.GELU())
        self.dec1 = CNNBlock(c1, num_blocks, groups, kernel_size)
        self.out1 = nn.Conv2d(c1, in_channels, 3, padding=1)

    def forward(self, x, return_all=None):
        """Restore ``x`` (N, C, H, W) of any size.

        Args:
            x (Tensor): Degraded images.
            return_all (bool | None): ``True``: return ``[1/4, 1/2, full]`` predictions; ``False``:
                only the full-resolution one; ``None``: all of them only in training mode with
                ``return_all_train=True``.
        """
        if return_all is None:
            return_all = self.return_all_train and self.training
        if return_all and not self.multi_output:
            raise ValueError('IRNeXt was built with multi_output=False: there is only the full-resolution output.')
        inp, (h, w) = pad_to_multiple(x, self.pad_multiple, mode='reflect')
        inp2 = F.avg_pool2d(inp, 2)
        inp3 = F.avg_pool2d(inp2, 2)

        e1 = self.enc1(self.shallow(inp))
        e2 = self.enc2(self.merge2(torch.cat([self.down1(e1), self.convs2(inp2)], dim=1)))
        e3 = self.enc3(self.merge3(torch.cat([self.down2(e2), self.convs3(inp3)], dim=1)))

        d3 = self.dec3(e3)
        d2 = self.dec2(self.reduce2(torch.cat([self.up3(d3), e2], dim=1)))
        d1 = self.dec1(self.reduce1(torch.cat([self.up2(d2), e1], dim=1)))
        out1 = crop_to(self.out1(d1) + inp, (h, w))
        if not return_all:  # the low-resolution heads only serve the multi-output loss
            return out1
        out3 = self.out3(d3) + inp3
        out2 = self.out2(d2) + inp2
        # crop the low-resolution outputs to the footprint of the unpadded image
        h2, w2, h3, w3 = math.ceil(h / 2), math.ceil(w / 2), math.ceil(h / 4), math.ceil(w / 4)
        return [out3[..., :h3, :w3], out2[..., :h2, :w2], out1]

    def config_summary(self):
        return f'IRNeXt(width={self.width}, num_blocks={self.num_blocks}, multi_output={self.multi_output})'

    def checkpoint_hint(self, state_dict):
        """Width and blocks per CNNBlock read off the checkpoint."""
        w = state_dict.get('shallow.weight')
        if w is None:
            return None
        blocks = 1 + max((int(k.split('.')[1]) for k in state_dict if k.startswith('enc1.')), default=0)
        heads = 'with' if 'out2.weight' in state_dict else 'without'
        return f'the checkpoint looks like width={w.shape[0]}, num_blocks={blocks}, {heads} the low-resolution heads.'
