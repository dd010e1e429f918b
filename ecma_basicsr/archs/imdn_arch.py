"""IMDN, a lightweight SR baseline: "Lightweight Image Super-Resolution with Information
Multi-distillation Network" (Hui, Gao, Yang and Wang, ACM MM 2019).

The network (paper, section "Proposed Method", framework) is a 3x3 feature conv, six information
multi-distillation blocks (IMDB), a 1x1 conv fusing the concatenated block outputs, a 3x3 conv with
a long skip and a single conv + PixelShuffle upsampler. An IMDB (same section, "Information
multi-distillation block": progressive refinement module and contrast-aware channel attention)
refines features progressively: each of three 3x3 convs keeps a quarter of its output channels
("distilled") and passes the other three quarters on; a fourth conv produces the last quarter. The
four quarters are concatenated, re-weighted by contrast-aware channel attention (CCA: per-channel
standard deviation + mean, then a 1x1 bottleneck and a sigmoid) and fused by a 1x1 conv with a
residual connection. Activations are LeakyReLU(0.05); the fourth conv has none.

Module and parameter names match the authors' checkpoints (``fea_conv``, ``IMDB1`` ..
``IMDB6``, ``c``, ``LR_conv``, ``upsampler``), so ``IMDN_x{2,3,4}.pth`` load directly; their
``module.`` prefix is dropped by BasicSR (and by our checked ``load_state_dict``). Those files
are bare state dicts: set ``param_key_g: ~`` in the option file (the plugin's loader also takes a
bare state dict when ``param_key_g`` names an entry it does not have). Parameters (:data:`PRESETS`):
694,404 (x2), 703,059 (x3) and 715,176 (x4); the paper reports 694K / 703K / 715K.
``IMDN(in_nc, nf, num_modules, out_nc, upscale)`` is the authors' constructor; fixtures made with
their code agree within 4e-7 (``tests/test_golden.py``).
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ecma_basicsr.archs.presets import Preset
from ecma_basicsr.archs.state_dict_check import CheckedLoadMixin

__all__ = ['CCALayer', 'IMDB', 'IMDN', 'PRESETS']

_SOURCE = 'IMDN (Hui et al., ACM MM 2019), published parameter counts'
PRESETS = {f'IMDN-x{s}': Preset('IMDN', dict(upscale=s), params=p, source=_SOURCE, scale=s)
           for s, p in ((2, 694e3), (3, 703e3), (4, 715e3))}


class CCALayer(nn.Module):
    """Contrast-aware channel attention (IMDN, "Information multi-distillation block").

    The channel statistic is the sum of the spatial standard deviation (population, i.e. divided by
    H*W) and the spatial mean, which the paper argues suits low-level vision better than the mean
    alone.

    Args:
        channels (int): Channels.
        reduction (int): Bottleneck reduction of the 1x1 convs.
    """

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.conv_du(std + mean)


class IMDB(nn.Module):
    """Information multi-distillation block (IMDN, "Information multi-distillation block").

    Args:
        channels (int): Channels in and out (64 in IMDN).
        distillation_rate (float): Fraction of channels kept at each step (0.25).
    """

    def __init__(self, channels=64, distillation_rate=0.25):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(self.remaining, channels, 3, padding=1)
        self.c3 = nn.Conv2d(self.remaining, channels, 3, padding=1)
        self.c4 = nn.Conv2d(self.remaining, self.distilled, 3, padding=1)
        self.c5 = nn.Conv2d(self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4)
        self.act = nn.LeakyReLU(0.05, inplace=True)

    def forward(self, x):
        split = (self.distilled, self.remaining)
        d1, r = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r = torch.split(self.act(self.c2(r)), split, dim=1)
        d3, r = torch.split(self.act(self.c3(r)), split, dim=1)
        d4 = self.c4(r)
        return self.c5(self.cca(torch.cat([d1, d2, d3, d4], dim=1))) + x


@ARCH_REGISTRY.register()
class IMDN(CheckedLoadMixin, nn.Module):
    """IMDN for x2 / x3 / x4 bicubic SR.

    Fully convolutional, so any input size works without padding; the output is exactly
    ``upscale`` times the input.

    Args:
        in_nc (int): Input channels.
        nf (int): Feature channels.
        num_modules (int): Number of IMDBs.
        out_nc (int): Output channels.
        upscale (int): Scale factor (2, 3 or 4 for the published checkpoints).
        distillation_rate (float): IMDB distillation rate.
    """

    def __init__(self, in_nc=3, nf=64, num_modules=6, out_nc=3, upscale=4, distillation_rate=0.25):
        super().__init__()
        self.in_nc, self.nf, self.num_modules, self.out_nc, self.upscale = in_nc, nf, num_modules, out_nc, upscale
        self.in_channels = in_nc
        self.fea_conv = nn.Conv2d(in_nc, nf, 3, padding=1)
        for i in range(num_modules):
            self.add_module(f'IMDB{i + 1}', IMDB(nf, distillation_rate))
        self.c = nn.Sequential(nn.Conv2d(nf * num_modules, nf, 1), nn.LeakyReLU(0.05, inplace=True))
        self.LR_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(nf, out_nc * upscale ** 2, 3, padding=1), nn.PixelShuffle(upscale))

    def forward(self, x):
        fea = self.fea_conv(x)
        outs = []
        out = fea
        for i in range(self.num_modules):
            out = getattr(self, f'IMDB{i + 1}')(out)
            outs.append(out)
        out = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(out)

    def config_summary(self):
        return (f'IMDN(in_nc={self.in_nc}, nf={self.nf}, num_modules={self.num_modules}, '
                f'out_nc={self.out_nc}, upscale={self.upscale})')

    def checkpoint_hint(self, state_dict):
        """The upsampler conv has out_nc * upscale**2 filters: read the scale off it."""
        w = state_dict.get('upsampler.0.weight')
        if w is None:
            return None
        scale = round((w.shape[0] / self.out_nc) ** 0.5)
        if scale * scale * self.out_nc == w.shape[0] and scale != self.upscale:
            return f'the checkpoint was trained for upscale={scale} (this network has upscale={self.upscale}).'
        return None
