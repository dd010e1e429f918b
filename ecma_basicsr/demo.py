"""The README's main job: a small ECMA-SR x4 trained and evaluated offline, in minutes, on a CPU.

``make demo`` (or ``python -m ecma_basicsr.demo``) does, under ``demo_run/`` in the current folder:

1. builds a DIV2K-shaped sample set from the photographs scikit-image ships, with the real
   preparation code (``python -m datasets_prep sample --task sr``: MATLAB-style bicubic x4, HR/LR
   sub-image LMDBs); chelsea and coffee are held out;
2. writes an option file derived from ``options/train_ECMA_SR_x4.yml`` (same model, losses,
   optimizer and schedule; a reduced ECMA-SR and a short run) and trains it through the real
   ``basicsr train`` command path;
3. evaluates the trained network on the held-out photos (PSNR/SSIM on Y, border = 4, the SR
   protocol) next to MATLAB-bicubic upscaling, and prints both.

Rerunning reuses the sample set but trains afresh. ``--iters`` and ``--width`` trade time for
quality; the defaults finish well inside 10 minutes on 2 cores.
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import time

import numpy as np
import yaml

HERE = osp.dirname(osp.abspath(__file__))
BASE_OPTIONS = osp.join(osp.dirname(HERE), 'options', 'train_ECMA_SR_x4.yml')
SCALE = 4


def demo_options(base, data_root, iters, width, blocks, batch, patch):
    """The demo's option dict: ``base`` (the paper's ECMA-SR x4 options) with a small, short run."""
    opt = dict(base)
    opt.update(name='demo_ECMA_SR_x4', num_gpu=0, manual_seed=0)
    train = dict(base['datasets']['train'])
    train.update(dataroot_gt=osp.join(data_root, 'DIV2K_train_HR_sub.lmdb'),
                 dataroot_lq=osp.join(data_root, f'DIV2K_train_LR_bicubic_X{SCALE}_sub.lmdb'),
                 gt_size=patch, batch_size_per_gpu=batch, num_worker_per_gpu=0, dataset_enlarge_ratio=1)
    opt['datasets'] = {'train': train}
    opt['network_g'] = dict(base['network_g'], width=width, enc_blocks=list(blocks), kernels=[16, 8])
    opt['train'] = dict(base['train'], total_iter=iters, ema_decay=0)
    opt['train']['optim_g'] = dict(base['train']['optim_g'], lr=2e-3)
    opt['train']['scheduler'] = dict(base['train']['scheduler'], periods=[iters])
    opt['logger'] = dict(print_freq=max(1, iters // 10), save_checkpoint_freq=iters, use_tb_logger=False)
    opt.pop('val', None)  # evaluated below, on the held-out photos, next to bicubic
    return opt


def evaluate(net_path, network_opt, data_root):
    """Mean (PSNR, SSIM) on Y of the network and of MATLAB bicubic over the held-out photos."""
    import torch
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import imfrombytes, img2tensor, tensor2img
    from basicsr.utils.matlab_functions import imresize

    net = build_network(dict(network_opt))
    net.load_state_dict(torch.load(net_path, map_location='cpu', weights_only=True)['params'])
    net.eval()
    scores = {'ECMA-SR (demo)': [], 'bicubic': []}
    for hr_path in sorted(glob.glob(osp.join(data_root, 'DIV2K_valid_HR', '*.png'))):
        stem = osp.splitext(osp.basename(hr_path))[0]
        lr_path = osp.join(data_root, 'DIV2K_valid_LR_bicubic', f'X{SCALE}', f'{stem}x{SCALE}.png')
        hr = imfrombytes(open(hr_path, 'rb').read(), float32=True)
        lr = imfrombytes(open(lr_path, 'rb').read(), float32=True)
        hr = hr[:lr.shape[0] * SCALE, :lr.shape[1] * SCALE]
        with torch.inference_mode():
            sr = tensor2img(net(img2tensor(lr, bgr2rgb=True, float32=True)[None]).clamp(0, 1))
        bic = np.clip(imresize(lr, SCALE), 0, 1)
        gt = (hr * 255).round().astype(np.uint8)
        for name, img in (('ECMA-SR (demo)', sr), ('bicubic', (bic * 255).round().astype(np.uint8))):
            kw = dict(crop_border=SCALE, test_y_channel=True)
            scores[name].append((calculate_psnr(img, gt, **kw), calculate_ssim(img, gt, **kw)))
    return {k: tuple(np.mean(v, axis=0)) for k, v in scores.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', default='demo_run', help='where data, experiment and options go')
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument('--width', type=int, default=32)
    parser.add_argument('--blocks', type=int, nargs=2, default=(2, 1))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--patch', type=int, default=96, help='HR training crop')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (default 1: on a 2-core machine busy with anything else, '
                             'oversubscribed threads spin and were measured 10x slower)')
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    import ecma_basicsr  # noqa: F401
    from datasets_prep.sample import make_sample
    from ecma_basicsr.cli import main as basicsr_main

    start = time.time()
    work = osp.abspath(args.workdir)
    data_root = osp.join(work, 'datasets', 'DIV2K')
    if not osp.isfile(osp.join(data_root, 'SAMPLE.json')):
        print(f'[1/3] building the sample set in {data_root} ...', flush=True)
        make_sample('sr', data_root)
    else:
        print(f'[1/3] sample set found in {data_root}', flush=True)

    with open(BASE_OPTIONS) as f:
        base = yaml.safe_load(f)
    opt = demo_options(base, data_root, args.iters, args.width, args.blocks, args.batch, args.patch)
    opt_file = osp.join(work, 'demo_ECMA_SR_x4.yml')
    with open(opt_file, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    shutil.rmtree(osp.join(work, 'experiments', opt['name']), ignore_errors=True)
    print(f'[2/3] basicsr train -opt {opt_file}  ({args.iters} iterations, width {args.width}, '
          f'blocks {list(args.blocks)}) ...', flush=True)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code = basicsr_main(['train', '-opt', opt_file])
    finally:
        os.chdir(cwd)
    if code:
        return code
    train_time = time.time() - start
    net_path = osp.join(work, 'experiments', opt['name'], 'models', 'net_g_latest.pth')

    print('[3/3] evaluating on the held-out photos (chelsea, coffee), Y channel, border 4', flush=True)
    scores = evaluate(net_path, opt['network_g'], data_root)
    print(f"\n{'method':18} {'PSNR (dB)':>10} {'SSIM':>8}")
    for name, (psnr, ssim) in scores.items():
        print(f'{name:18} {psnr:10.3f} {ssim:8.4f}')
    gain = scores['ECMA-SR (demo)'][0] - scores['bicubic'][0]
    print(f'\nECMA-SR vs bicubic: {gain:+.3f} dB PSNR; wall time {time.time() - start:.0f} s '
          f'(training done at {train_time:.0f} s). Checkpoint: {net_path}')
    return 0 if gain > 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
