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
  step, so no checkpoint with broken weights is ever written and the last good one stays;
* ``train: use_amp: bf16 | fp16`` - mixed precision: the network's forward runs under
  ``torch.autocast``, the losses in float32; fp16 adds a ``GradScaler`` whose state is saved in
  the training state. The FFTs (``LargeKernelConv``, ``FFTLoss``) always run in float32;
* ``train: compile: true`` - ``torch.compile`` of the network (off by default; see
  :meth:`ECMAModel.compile_network`);
* ``train: deterministic: true`` - cuDNN autotuning off and deterministic cuDNN kernels, so GPU
  runs (and resumed runs) repeat exactly.

Exact resume (RNG states, data position), atomic checkpoints, weights-only loading and CPU DDP come
from :class:`~ecma_basicsr.engine.model.EngineModelMixin`, a base class (the ``basicsr train`` engine
gives other BasicSR models the same mixin).

Validation (PSNR/SSIM per the ``val: metrics`` options) is SRModel's. BasicSR's ``SwinIR`` gets the
authors' reflect-pad-and-crop around its forward (:mod:`ecma_basicsr.archs.window_padding`), so it
validates and tests on any image size.
"""
import contextlib
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from ecma_basicsr.archs import fuse_for_inference
from ecma_basicsr.archs.arch_util import image_channels
from ecma_basicsr.archs.window_padding import add_window_padding
from ecma_basicsr.engine.checkpoint import list_states
from ecma_basicsr.engine.model import EngineModelMixin


def make_optimizer(optim_type, params, lr, **kwargs):
    """``torch.optim.<optim_type>(params, lr, **kwargs)`` with a clear error for unknown names."""
    choices = sorted(n for n in dir(torch.optim) if n[0].isupper() and n != 'Optimizer'
                     and isinstance(getattr(torch.optim, n), type)
                     and issubclass(getattr(torch.optim, n), torch.optim.Optimizer))
    if optim_type not in choices:
        raise ValueError(f"train:optim_g:type '{optim_type}' is not a torch.optim optimizer. "
                         f"Valid choices: {', '.join(choices)}.")
    return getattr(torch.optim, optim_type)(params, lr, **kwargs)


AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def amp_dtype(value, device):
    """The autocast dtype for ``train: use_amp`` (None when off), checked against the device.

    Args:
        value: ``bf16``, ``fp16``, or false / ``none`` / ``fp32`` for full precision.
        device (torch.device): Where the network runs.
    """
    if value in (None, False) or (isinstance(value, str) and value.lower() in ('none', 'false', 'fp32', 'off')):
        return None
    if value not in AMP_DTYPES:
        raise ValueError(f"train:use_amp must be bf16, fp16 or false, got {value!r}.")
    if value == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise ValueError('train:use_amp is bf16 but this GPU has no bfloat16 support; use fp16.')
    return AMP_DTYPES[value]


@MODEL_REGISTRY.register()
class ECMAModel(EngineModelMixin, SRModel):
    """Image restoration model for ECMA (and any network: it only adds losses/optimizers)."""

    def __init__(self, opt):
        super().__init__(opt)
        for net in (self.net_g, getattr(self, 'net_g_ema', None)):
            if net is not None:
                add_window_padding(self.get_bare_model(net))

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.cri_freq = build_loss(train_opt['fft_opt']).to(self.device) if train_opt.get('fft_opt') else None
        self.grad_clip = train_opt.get('grad_clip')
        self.amp_dtype = amp_dtype(train_opt.get('use_amp'), self.device)
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        if train_opt.get('deterministic'):
            # BasicSR's train_pipeline turns cuDNN autotuning on; it may pick different kernels per run.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        compile_opt = train_opt.get('compile', False)
        if compile_opt:
            self.compile_network({} if compile_opt is True else compile_opt)
        super().init_training_settings()

    def compile_network(self, kwargs=None):
        """``torch.compile`` the network in place (``nn.Module.compile``).

        ``train: compile`` is ``true`` or a dict of ``torch.compile`` arguments (``mode``,
        ``backend``, ``dynamic``, ``fullgraph``). The module keeps its class and state-dict keys,
        so checkpoints, EMA and DDP are unchanged. Compiling around the FFTs:

        * ``large_kernel_mode: auto`` picks FFT or spatial per layer by timing it in Python,
          which would split the graph at every large-kernel layer; :meth:`freeze_kernel_modes`
          makes that choice once, eagerly, at the training input size, so the graph is whole.
        * Inductor has no code generation for complex tensors: the FFTs of ``LargeKernelConv`` /
          ``FFTLoss`` run as ATen fallback kernels inside the compiled graph (torch warns once).
        * Validation (:meth:`test`) runs the network eagerly: validation images differ in size
          and would each trigger a recompilation.

        On CPU inductor needs a C++ compiler and the first iterations take minutes.
        """
        kwargs = {} if kwargs is None else kwargs
        valid = ('mode', 'backend', 'dynamic', 'fullgraph', 'options')
        if not isinstance(kwargs, dict) or set(kwargs) - set(valid):
            raise ValueError(f'train:compile must be true, false or a dict with keys {", ".join(valid)}; '
                             f'got {kwargs!r}.')
        net = self.get_bare_model(self.net_g)
        self.freeze_kernel_modes(net)
        net.compile(**kwargs)
        self.compiled = True

    def freeze_kernel_modes(self, net):
        """Replace ``large_kernel_mode: auto`` by each layer's measured choice at the training size.

        Returns:
            dict: ``{'fft': n, 'spatial': m}`` layers frozen (empty when no layer was 'auto').
        """
        from basicsr.utils import get_root_logger

        from ecma_basicsr.archs.fft_conv import LargeKernelConv
        autos = [m for m in net.modules() if isinstance(m, LargeKernelConv) and m.mode == 'auto']
        if not autos:
            return {}
        train = (self.opt.get('datasets') or {}).get('train') or {}
        size = train.get('gt_size')
        if size is None:
            for module in autos:
                module.mode = 'fft'
        else:
            lr_size = size // self.opt.get('scale', 1)
            shape = (train.get('batch_size_per_gpu', 1), image_channels(net)[0] or 3, lr_size, lr_size)

            def freeze(module, args):
                module.mode = module.path_for(args[0])

            hooks = [m.register_forward_pre_hook(freeze) for m in autos]
            try:
                with torch.no_grad():
                    net(torch.rand(shape, device=self.device))
            finally:
                for hook in hooks:
                    hook.remove()
        counts = {mode: sum(m.mode == mode for m in autos) for mode in ('fft', 'spatial')}
        get_root_logger().info(f'compile: large_kernel_mode auto frozen for {counts["fft"]} FFT and '
                               f'{counts["spatial"]} spatial layers (input {size or "unknown, all FFT"}).')
        return counts

    def test(self):
        """Run the network on ``self.lq`` for validation / ``basicsr test``.

        The EMA network when there is one, else ``net_g``; through its
        :func:`~ecma_basicsr.archs.fuse_for_inference` copy, made once per :meth:`validation` call
        (the weights change between validations); a compiled network runs eagerly (validation
        images differ in size and would each recompile).
        """
        net = self.get_bare_model(self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g)
        net = getattr(net, '_orig_mod', net)
        cached = getattr(self, '_inference_net', None)
        if cached is None or cached[0] is not net:
            cached = self._inference_net = (net, fuse_for_inference(net))
        fused = cached[1]
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                self.output = fused(self.lq)
        finally:
            net.train(was_training)

    def validation(self, *args, **kwargs):
        """BasicSR's validation with a fresh inference copy of the network (see :meth:`test`)."""
        self._inference_net = None
        try:
            return super().validation(*args, **kwargs)
        finally:
            self._inference_net = None

    def autocast(self):
        """Context for the forward pass: autocast when ``use_amp`` is set, else nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def extra_training_state(self):
        """Entries added to ``<iter>.state``: the fp16 grad scaler."""
        return {'grad_scaler': self.grad_scaler.state_dict()} if self.grad_scaler is not None else {}

    def load_extra_training_state(self, state):
        if self.grad_scaler is not None and state.get('grad_scaler'):
            self.grad_scaler.load_state_dict(state['grad_scaler'])

    def feed_data(self, data):
        """SRModel.feed_data, refusing images whose channel count the network cannot take."""
        expected, arg = image_channels(self.get_bare_model(self.net_g))
        got = data['lq'].shape[1]
        if expected is not None and got != expected:
            names = data.get('lq_path') or ['(no path)']
            raise ValueError(f"image {names[0]} has {got} channels but network_g takes {arg}={expected}. "
                             f"Set network_g:{arg}: {got}, or read the images with {expected} channel(s) "
                             f"(BasicSR reads colour; gray networks need 'color: y' or in_ch: 1 datasets).")
        super().feed_data(data)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        return make_optimizer(optim_type, params, lr, **kwargs)

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        shape = {k: v for k, v in self.opt['train']['scheduler'].items()
                 if k in ('periods', 'restart_weights', 'eta_min')}
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
        with self.autocast():
            self.output = self.net_g(self.lq)
        if self.amp_dtype is not None:  # losses in float32; multi-output networks return a list
            out = self.output
            self.output = [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()
        l_total, terms = self.compute_losses()
        if not torch.isfinite(l_total):
            values = ', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())
            raise FloatingPointError(
                f'non-finite loss at iteration {current_iter} ({values}); training stopped before the '
                f'optimizer step. Last good training state: {self.last_checkpoint()}. Lower the learning '
                f'rate or set train:grad_clip, then resume with --auto_resume.')
        scaler = self.grad_scaler
        (scaler.scale(l_total) if scaler is not None else l_total).backward()
        if self.grad_clip:
            if scaler is not None:
                scaler.unscale_(self.optimizer_g)
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer_g)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(terms)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
