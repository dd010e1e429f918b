"""NAFNet's training loss: the negative PSNR of each image, averaged over the batch.

Chen et al., "Simple Baselines for Image Restoration" (ECCV 2022), Sec. 4 (experiments): the models are
trained "with PSNR loss". The authors' ``PSNRLoss`` (github.com/megvii-research/NAFNet,
``basicsr/models/losses/losses.py``, read for the formula only) computes, per image n,

    loss = loss_weight * 10 / ln(10) * mean_n log(MSE_n + 1e-8)

where MSE_n is the mean squared error over the channels and pixels of image n. For images in [0, 1]
(peak 1) PSNR_n = -10 log10(MSE_n), so the loss is minus the per-image PSNR in dB averaged over the
batch (the 1e-8 keeps identical images finite). Unlike a single MSE over the batch, every image counts
the same in dB however large its error is.

``toY=True`` first converts RGB in [0, 1] to the BT.601 luma Y = (16 + 65.481 R + 128.553 G +
24.966 B) / 255, as the authors' option does (their SIDD models do not use it).
"""
import math

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

REDUCTIONS = ('none', 'mean', 'sum')
# BT.601 luma of RGB in [0, 1], in units of 1/255 (BasicSR's rgb2ycbcr, ``y_only``)
_Y_COEF = (65.481, 128.553, 24.966)
_EPS = 1e-8


def rgb_to_y(x):
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) BT.601 luma in [16/255, 235/255]."""
    coef = x.new_tensor(_Y_COEF).view(1, 3, 1, 1)
    return ((x * coef).sum(dim=1, keepdim=True) + 16.) / 255.


@LOSS_REGISTRY.register()
class PSNRLoss(nn.Module):
    """Negative PSNR (dB, peak 1) per image, reduced over the batch (NAFNet's loss).

    Args:
        loss_weight (float): Weight of the loss. Default: 1.0.
        reduction (str): Over the per-image values: 'mean' (NAFNet), 'sum' or 'none' (shape (N,)).
        toY (bool): Compare the BT.601 luma of RGB inputs instead of all channels.
    """

    def __init__(self, loss_weight=1.0, reduction='mean', toY=False):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"PSNRLoss reduction must be one of {REDUCTIONS} (NAFNet uses 'mean'), "
                             f"got '{reduction}'.")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.toY = bool(toY)
        self.scale = 10. / math.log(10.)

    def forward(self, pred, target, weight=None, **kwargs):
        """
        Args:
            pred (Tensor): (N, C, H, W) prediction.
            target (Tensor): (N, C, H, W) ground truth.
            weight (None): Element-wise weights are not defined for this loss; must be None.
        """
        if weight is not None:
            raise ValueError('PSNRLoss takes no element-wise weight (it is a per-image PSNR); pass weight=None.')
        if pred.dim() != 4 or pred.shape != target.shape:
            raise ValueError(f'PSNRLoss needs two (N, C, H, W) tensors of equal shape, got {tuple(pred.shape)} '
                             f'and {tuple(target.shape)}.')
        # float32 with autocast off: in half precision 1e-8 underflows and log(0) would be -inf
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            if self.toY:
                if pred.shape[1] != 3:
                    raise ValueError(f'PSNRLoss with toY: true needs RGB inputs (3 channels), got {pred.shape[1]}; '
                                     'set toY: false for other images.')
                pred, target = rgb_to_y(pred), rgb_to_y(target)
            per_image = self.scale * torch.log((pred - target).square().mean(dim=(1, 2, 3)) + _EPS)
        if self.reduction == 'mean':
            per_image = per_image.mean()
        elif self.reduction == 'sum':
            per_image = per_image.sum()
        return self.loss_weight * per_image
