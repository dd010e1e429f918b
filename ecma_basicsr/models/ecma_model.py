"""ECMAModel: BasicSR's SRModel trained with ECMA's pixel + frequency losses (paper Sec. 4).

Adds to ``basicsr.models.SRModel``:

* ``train: fft_opt`` - a second loss on the output (ECMA: ``FFTLoss`` with weight 0.05) next to
  ``pixel_opt`` (``L1Loss``, weight 1.0);
* any ``torch.optim`` optimizer by name in ``optim_g`` (ECMA: AdamW; 1.4.2 only knows Adam);
* ``train: grad_clip`` - optional max gradient norm;
* on resume, the cosine schedule's shape (periods, restart weights, eta_min) comes from the
  option file, not the saved state, so ``--force_yml train:total_iter=... train:scheduler:periods=[...]``
  can extend a finished run (BasicSR 1.4.2 crashes with a TypeError past the saved periods);
* a non-finite loss stops training with the iteration in the message, before the optimizer
  step, so no checkpoint with broken weights is ever written and the last good one stays.

Validation (PSNR/SSIM per the ``val: metrics`` options) is SRModel's.
"""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from ecma_basicsr.utils.checkpoint import list_states


def make_optimizer(optim_type, params, lr, **kwargs):
    """``torch.optim.<optim_type>(params, lr, **kwargs)`` with a clear error for unknown names."""
    choices = sorted(n for n in dir(torch.optim) if n[0].isupper() and n != 'Optimizer'
                     and isinstance(getattr(torch.optim, n), type)
                     and issubclass(getattr(torch.optim, n), torch.optim.Optimizer))
    if optim_type not in choices:
        raise ValueError(f"train:optim_g:type '{optim_type}' is not a torch.optim optimizer. "
                         f"Valid choices: {', '.join(choices)}.")
    return getattr(torch.optim, optim_type)(params, lr, **kwargs)


@MODEL_REGISTRY.register()
class ECMAModel(SRModel):
    """Image restoration model for ECMA (and any network: it only adds losses/optimizers)."""

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.cri_freq = build_loss(train_opt['fft_opt']).to(self.device) if train_opt.get('fft_opt') else None
        self.grad_clip = train_opt.get('grad_clip')
        super().init_training_settings()

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        return make_optimizer(optim_type, params, lr, **kwargs)

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        shape = {k: v for k, v in self.opt['train']['scheduler'].items() if k in ('periods', 'restart_weights', 'eta_min')}
        for scheduler in self.schedulers:
            if isinstance(scheduler, CosineAnnealingRestartLR):
                for key, value in shape.items():
                    setattr(scheduler, key, list(value) if isinstance(value, (list, tuple)) else value)
                scheduler.cumulative_period = [sum(scheduler.periods[:i + 1]) for i in range(len(scheduler.periods))]

    def compute_losses(self):
        """Total loss and a dict of its named terms for ``self.output`` against ``self.gt``."""
        terms = OrderedDict()
        if self.cri_pix:
            terms['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.cri_freq:
            terms['l_freq'] = self.cri_freq(self.output, self.gt)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            if l_percep is not None:
                terms['l_percep'] = l_percep
            if l_style is not None:
                terms['l_style'] = l_style
        return sum(terms.values()), terms

    def last_checkpoint(self):
        states = list_states(self.opt['path'].get('training_states', ''))
        return states[0][1] if states else 'none written yet'

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        l_total, terms = self.compute_losses()
        if not torch.isfinite(l_total):
            values = ', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())
            raise FloatingPointError(
                f'non-finite loss at iteration {current_iter} ({values}); training stopped before the '
                f'optimizer step. Last good training state: {self.last_checkpoint()}. Lower the learning '
                f'rate or set train:grad_clip, then resume with --auto_resume.')
        l_total.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(terms)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
