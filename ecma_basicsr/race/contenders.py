"""The race's tasks and contenders: one table for ``basicsr race``, its tests and the README.

Every contender of a task trains with the same crop, batch, iterations, optimizer (AdamW, lr 1e-3,
betas (0.9, 0.9), no weight decay: the ECMA and NAFNet recipes) and cosine schedule; only the
network and its paper's loss differ:

* ECMA and its ablations: L1 plus the FFT frequency loss with the weight of our ECMA option files
  (read from ``options/``, see :data:`ECMA_OPTIONS`);
* NAFNet (denoising): the PSNR loss of the NAFNet paper; NAFNetSR (NAFSSR without the stereo
  attention, for SR): the MSE loss of the NAFSSR option files;
* SwinIR: L1 for SR, the Charbonnier loss with epsilon 1e-3 for denoising (SwinIR paper, Sec. 4.1;
  BasicSR's ``eps`` is epsilon squared).

Sizes are reductions of the papers' networks to a CPU budget, chosen so that the MACs per pixel of
all contenders of a task lie within :data:`BUDGET_TOLERANCE` (counted by
:func:`~ecma_basicsr.analysis.flops.analyze_macs`, FFT work included, at :attr:`Task.budget_size`):
ECMA-T's block layout at width 12 for denoising and an ECMA-SR of width 32 with (2, 1) blocks and
kernels (16, 8) for SR (the ``make demo`` network). The two ablations are size-aligned with the
reduced ECMA as the paper's Sec. 4.5 aligned them with ECMA-T: element-wise addition changes no
size; "without cascading" drops W and W' of the cascade and gets one block back at the level where
that brings it closest (``test_race.py`` checks both tolerances).
"""
import os.path as osp
from dataclasses import dataclass, field

from . import RaceError

BUDGET_TOLERANCE = 0.20  # max / min of MACs per pixel among a task's contenders, minus one
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ECMA_OPTIONS = {'denoise': osp.join(REPO, 'options', 'table7_sidd', 'ECMA-T_SIDD_train.yml'),
                'sr': osp.join(REPO, 'options', 'train_ECMA_SR_x4.yml')}
OPTIMIZER = dict(type='AdamW', lr=1e-3, weight_decay=0, betas=[0.9, 0.9])
ETA_MIN = 1e-7


@dataclass(frozen=True)
class Contender:
    """One network of a race.

    Attributes:
        label (str): Row name (also the experiment name, so letters, digits, '-' and '_').
        network (dict): ``network_g`` of the option file.
        losses (dict | str): ``train`` loss entries (``pixel_opt``, ``fft_opt``), or ``'ecma'`` for
            the losses of the task's ECMA option file.
        role (str): 'ecma', 'ablation' or 'rival'.
        note (str): What it is, for the report.
    """
    label: str
    network: dict
    losses: object
    role: str
    note: str = ''


@dataclass(frozen=True)
class Task:
    """One task of the race and what is fixed for all its contenders.

    Attributes:
        name (str): 'denoise' or 'sr'.
        scale (int): Upscaling factor (1 for denoising).
        crop (int): Training crop, ground-truth pixels.
        batch (int): Batch size.
        iters (int): Training iterations of the full race; ``quick_iters`` for ``--quick``.
        testsets (tuple): ``(name, bench task, folder under the data root)``: the bench harness's
            test-set grammar (:mod:`ecma_basicsr.bench.testsets`).
        contenders (tuple[Contender]): The networks.
        budget_size (int): Input side at which MACs per pixel are counted (the paper's 256 px crop;
            64 px LR for SR, i.e. 256 px output).
        sigma (float): Noise level (denoising).
    """
    name: str
    scale: int
    crop: int
    batch: int
    iters: int
    quick_iters: int
    testsets: tuple
    contenders: tuple
    budget_size: int
    sigma: float = None
    metric: dict = field(default_factory=dict)


def _swinir(upscale, embed_dim, depths, upsampler):
    return dict(type='SwinIR', upscale=upscale, in_chans=3, img_size=64 // upscale, window_size=8, img_range=1.0,
                depths=list(depths), embed_dim=embed_dim, num_heads=[2] * len(depths), mlp_ratio=2.0,
                upsampler=upsampler, resi_connection='1conv')


_ECMA_DN = dict(type='ECMA', variant='T', width=12)
_ECMA_SR = dict(type='ECMASR', upscale=4, width=32, enc_blocks=[2, 1], kernels=[16, 8])

TASKS = {
    'denoise': Task(
        name='denoise', scale=1, crop=64, batch=8, iters=800, quick_iters=30, sigma=25.0, budget_size=256,
        testsets=(('CBSD68', 'awgn25', 'CBSD68'), ('Kodak24', 'awgn25', 'Kodak24')),
        metric=dict(crop_border=0, test_y_channel=False),
        contenders=(
            Contender('ECMA', _ECMA_DN, 'ecma', 'ecma', 'ECMA-T layout (1,1,2,9) at width 12'),
            Contender('ECMA-add', dict(_ECMA_DN, lam_combine='add'), 'ecma', 'ablation',
                      'Table 8: element-wise addition instead of the adaptive product'),
            Contender('ECMA-no-cascade', dict(_ECMA_DN, cascade=False, enc_blocks=[1, 1, 3, 9]), 'ecma', 'ablation',
                      'Table 9: without cascading, one block more at level 3 (size-aligned)'),
            Contender('NAFNet', dict(type='NAFNet', width=12, enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12,
                                     dec_blk_nums=[2, 2, 2, 2]), {'pixel_opt': dict(type='PSNRLoss', loss_weight=1.0)},
                      'rival', 'NAFNet-SIDD layout at width 12'),
            Contender('SwinIR', _swinir(1, 20, (2, 2), ''),
                      {'pixel_opt': dict(type='CharbonnierLoss', loss_weight=1.0, eps=1e-6)}, 'rival',
                      'SwinIR (BasicSR arch), 2 RSTBs of 2 layers, width 20, window 8'),
        )),
    'sr': Task(
        name='sr', scale=4, crop=96, batch=8, iters=1600, quick_iters=30, budget_size=64,
        testsets=(('Set5', 'sr', 'Set5'), ('Set14', 'sr', 'Set14')),
        metric=dict(crop_border=4, test_y_channel=True),
        contenders=(
            Contender('ECMA-SR', _ECMA_SR, 'ecma', 'ecma', 'ECMA-SR, width 32, blocks (2, 1), kernels (16, 8)'),
            Contender('ECMA-SR-add', dict(_ECMA_SR, lam_combine='add'), 'ecma', 'ablation',
                      'Table 8: element-wise addition instead of the adaptive product'),
            Contender('ECMA-SR-no-cascade', dict(_ECMA_SR, cascade=False), 'ecma', 'ablation',
                      'Table 9: without cascading (one block more would overshoot by 17% MACs)'),
            Contender('NAFNetSR', dict(type='NAFNetSR', up_scale=4, width=32, num_blks=10),
                      {'pixel_opt': dict(type='MSELoss', loss_weight=1.0)}, 'rival',
                      'NAFSSR without stereo attention: 10 NAF blocks at width 32'),
            Contender('SwinIR', _swinir(4, 32, (2, 2), 'pixelshuffledirect'),
                      {'pixel_opt': dict(type='L1Loss', loss_weight=1.0)}, 'rival',
                      'SwinIR-light shape (pixel-shuffle direct), 2 RSTBs of 2 layers, width 32'),
        )),
}


def ecma_losses(task):
    """``pixel_opt`` and ``fft_opt`` of the task's ECMA option file (:data:`ECMA_OPTIONS`)."""
    import yaml
    path = ECMA_OPTIONS[task]
    with open(path) as f:
        train = yaml.safe_load(f)['train']
    return {key: dict(train[key]) for key in ('pixel_opt', 'fft_opt') if train.get(key)}


def losses_of(task, contender):
    return ecma_losses(task) if contender.losses == 'ecma' else {k: dict(v) for k, v in contender.losses.items()}


def select(tasks=None, contenders=None):
    """``[(Task, [Contender, ...]), ...]`` for the named tasks / contender labels (None: all)."""
    names = list(TASKS) if not tasks else list(tasks)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise RaceError(f"unknown task {', '.join(unknown)}; choose from {', '.join(TASKS)}.")
    labels = {c.label for t in names for c in TASKS[t].contenders}
    missing = sorted(set(contenders or ()) - labels)
    if missing:
        raise RaceError(f"unknown contender {', '.join(missing)} for task(s) {', '.join(names)}; "
                        f"choose from {', '.join(sorted(labels))}.")
    chosen = []
    for t in names:
        task = TASKS[t]
        picked = [c for c in task.contenders if not contenders or c.label in contenders]
        if picked:
            chosen.append((task, picked))
    return chosen


def budget(task, contenders=None):
    """``{label: (params, MACs per output pixel)}`` of a task's contenders, FFT work included."""
    import torch
    from basicsr.archs import build_network

    from ecma_basicsr.analysis.flops import analyze_macs, count_params
    size = task.budget_size
    out = {}
    for c in contenders or task.contenders:
        torch.manual_seed(0)
        net = build_network(dict(c.network))
        count = analyze_macs(net, (1, 3, size, size))
        out[c.label] = (count_params(net), count.total / (size * task.scale) ** 2)
    return out


def check_budget(task, sizes):
    """Raise :class:`RaceError` when MACs per pixel spread more than :data:`BUDGET_TOLERANCE`."""
    macs = {label: m for label, (_, m) in sizes.items()}
    low, high = min(macs, key=macs.get), max(macs, key=macs.get)
    if macs[high] > macs[low] * (1 + BUDGET_TOLERANCE):
        raise RaceError(f'{task.name}: {high} needs {macs[high]:.0f} MACs per pixel, {macs[high] / macs[low]:.2f}x '
                        f'of {low} ({macs[low]:.0f}); resize the contenders in ecma_basicsr/race/contenders.py to '
                        f'within {BUDGET_TOLERANCE:.0%}.')
    return macs[high] / macs[low] - 1
