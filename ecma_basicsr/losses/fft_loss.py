"""ECMA's frequency loss: L1 between the 2-D FFTs of prediction and target (paper Sec. 4).

The paper trains with ``1.0 * L1(pixels) + 0.05 * L1(FFT)`` ("similar to previous works [10]",
MIMO-UNet). We take the full 2-D FFT (``torch.fft.fft2``, no normalisation) over H and W,
stack its real and imaginary parts and apply BasicSR's weighted L1, so ``loss_weight`` and
``reduction`` behave as in ``basicsr.losses.L1Loss``. The transform runs in float32 with
autocast off, so half-precision training cannot overflow the spectrum.
"""
import torch
from basicsr.losses.basic_loss import l1_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

REDUCTIONS = ('none', 'mean', 'sum')


def spectrum(x):
    """(..., H, W) real tensor -> (..., H, W, 2) real/imaginary parts of its 2-D FFT, in float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.view_as_real(torch.fft.fft2(x.float()))


@LOSS_REGISTRY.register()
class FFTLoss(nn.Module):
    """L1 loss in the frequency domain.

    Args:
        loss_weight (float): Weight of the loss. Default: 1.0 (ECMA's options use 0.05).
        reduction (str): 'none' | 'mean' | 'sum'. Default: 'mean'.
    """

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"FFTLoss reduction must be one of {REDUCTIONS}, got '{reduction}'.")
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, pred, target, weight=None, **kwargs):
        """
        Args:
            pred (Tensor): (N, C, H, W) prediction.
            target (Tensor): (N, C, H, W) ground truth.
            weight (Tensor, optional): (N, C, H, W) element-wise weights of the spectrum bins.
        """
        if pred.shape != target.shape:
            raise ValueError(f'FFTLoss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}.')
        if weight is not None:
            weight = weight.unsqueeze(-1).expand(*weight.shape, 2)
        return self.loss_weight * l1_loss(spectrum(pred), spectrum(target), weight, reduction=self.reduction)
