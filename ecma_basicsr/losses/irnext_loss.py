"""IRNeXt's dual-domain loss over its three outputs (IRNeXt, ICML 2023, Sec. 3.4, Eq. 8-10).

``L = sum_i mean|I_i - Y_i| + lambda * sum_i mean|F(I_i) - F(Y_i)|`` over the 1/4, 1/2 and full
resolution predictions I_i, with lambda = 0.1 (Eq. 10). Y_i is the ground truth resized to the size of
I_i as the authors' release does it (the paper does not say): bilinear interpolation with
``align_corners=False`` and no antialiasing (at 1/2 that is the 2x2 mean; at 1/4 it averages the two
middle rows and columns of every 4 x 4 cell). The frequency term is
:class:`~ecma_basicsr.losses.fft_loss.FFTLoss` (L1 on the real and imaginary parts of the 2-D FFT, mean
over both), reused rather than re-implemented; its mean over real and imaginary parts is also what the
released IRNeXt training uses with lambda = 0.1 (Eq. 9's 1/P normalisation, read as the mean).

Use from an option file (BasicSR's ``SRModel`` or our ``ECMAModel``)::

    network_g: {type: IRNeXt, variant: gopro, return_all_train: true}
    train:
      pixel_opt: {type: IRNeXtLoss, loss_weight: 1.0, freq_weight: 0.1}

With ``return_all_train`` the network returns ``[out_1/4, out_1/2, out_full]`` in training mode,
the model hands that list to ``pixel_opt`` unchanged, and validation (eval mode) still gets the
full-resolution tensor. Given a single tensor, the loss uses it alone (one scale of Eq. 8-9).
Do not add a separate ``fft_opt`` for this network: the frequency term is already here and
``FFTLoss`` does not take a list.
"""
import torch.nn.functional as F
from basicsr.losses.basic_loss import l1_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ecma_basicsr.losses.fft_loss import FFTLoss


def match_size(target, size):
    """``target`` resized to ``size`` the release's way (bilinear; unchanged when it has that size)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target, size=tuple(size), mode='bilinear', align_corners=False)


@LOSS_REGISTRY.register()
class IRNeXtLoss(nn.Module):
    """Spatial L1 + ``freq_weight`` x frequency L1, summed over all outputs (Eq. 8-10).

    Args:
        loss_weight (float): Weight of the whole loss. Default: 1.0.
        freq_weight (float): lambda of Eq. 10. Default: 0.1; 0 gives the spatial term only.
        reduction (str): 'mean' | 'sum' | 'none' per output and term (as BasicSR's L1Loss).
            'none' is only possible for a single output (the per-scale maps differ in size).
    """

    def __init__(self, loss_weight=1.0, freq_weight=0.1, reduction='mean'):
        super().__init__()
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f"IRNeXtLoss reduction must be 'none', 'mean' or 'sum', got '{reduction}'.")
        self.loss_weight = loss_weight
        self.freq_weight = freq_weight
        self.reduction = reduction
        self.fft = FFTLoss(loss_weight=1.0, reduction=reduction)

    def forward(self, pred, target, weight=None, **kwargs):
        """
        Args:
            pred (Tensor | list[Tensor]): The full-resolution output, or all outputs (any order;
                each is compared with the target resized to its size).
            target (Tensor): Full-resolution ground truth (N, C, H, W).
            weight (Tensor, optional): Element-wise weights; only for a single full-size output.
        """
        preds = list(pred) if isinstance(pred, (list, tuple)) else [pred]
        if self.reduction == 'none' and len(preds) > 1:
            raise ValueError("IRNeXtLoss: reduction='none' needs a single output (the scales differ in size).")
        if weight is not None and len(preds) > 1:
            raise ValueError('IRNeXtLoss: element-wise weights are only supported for a single output.')
        total = 0
        for p in preds:
            t = match_size(target, p.shape[-2:])
            term = l1_loss(p, t, weight, reduction=self.reduction)  # Eq. 8
            if self.freq_weight:
                term = term + self.freq_weight * (self.fft(p, t, weight))  # Eq. 9, weighted by Eq. 10
            total = total + term
        return self.loss_weight * total
