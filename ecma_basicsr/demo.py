"""The README's main job: a small ECMA-SR x4 trained and evaluated offline, in minutes, on a CPU.

``make demo`` (or ``python -m ecma_basicsr.demo``) does, under ``demo_run/`` in the current folder:

1. builds a DIV2K-shaped sample set from the photographs scikit-image ships, with the real
   preparation code (``python -m datasets_prep sample --task sr``: MATLAB-style bicubic x4, HR/LR
   sub-image LMDBs); chelsea and coffee are held out;
2. writes an option file derived from ``options/train_ECMA_SR_x4.yml`` (same model, losses,
   optimizer and schedule; a reduced ECMA-SR and a short run) and trains it through the real
   ``basicsr train`` command path;
3. evaluates the trained network on the held-out photos (PSNR/SSIM on Y, border = 4, the SR
   protocol) next to MATLAB-bicubic upscaling, prints both, and writes for each photo one PNG with the
   same crop side by side (bicubic | ECMA-SR | ground truth, each with its PSNR), printing its path.

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


CROP = 128  # HR pixels of the side-by-side crops, shown at 2x


def comparison(stem, images, psnrs, out_dir, crop=CROP, zoom=2):
    """Write ``compare_<stem>.png``: one crop (the HR image's most detailed window) of bicubic | ECMA-SR | ground
    truth side by side, each labelled with its PSNR; returns the path."""
    import cv2
    gt = images[-1]
    h, w = gt.shape[:2]
    side = min(crop, h, w)
    gray = cv2.cvtColor(gt, cv2.COLOR_BGR2GRAY).astype(np.float32)
    energy = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
    step = max(side // 4, 1)  # the window with the most edges: where SR differs from bicubic
    y, x = max(((yy, xx) for yy in range(0, h - side + 1, step) for xx in range(0, w - side + 1, step)),
               key=lambda p: energy[p[0]:p[0] + side, p[1]:p[1] + side].sum())
    titles = [f'bicubic {psnrs[0]:.2f} dB', f'ECMA-SR {psnrs[1]:.2f} dB', 'ground truth']
    panels = []
    for img, title in zip(images, titles):
        tile = cv2.resize(img[y:y + side, x:x + side], (side * zoom, side * zoom), interpolation=cv2.INTER_NEAREST)
        head = np.full((22, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        panels += [np.concatenate([head, tile]), np.full((tile.shape[0] + 22, 4, 3), 255, np.uint8)]
    path = osp.join(out_dir, f'compare_{stem}.png')
    cv2.imwrite(path, np.concatenate(panels[:-1], axis=1))
    return path


def evaluate(net_path, network_opt, data_root, out_dir=None):
    """Mean (PSNR, SSIM) on Y of the network and of MATLAB bicubic over the held-out photos.

    With ``out_dir``, also writes one side-by-side crop per photo (:func:`comparison`); the paths are then
    returned as a second value.
    """
    import torch
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import imfrombytes, img2tensor, tensor2img
    from basicsr.utils.matlab_functions import imresize

    net = build_network(dict(network_opt))
    net.load_state_dict(torch.load(net_path, map_location='cpu', weights_only=True)['params'])
    net.eval()
    scores = {'ECMA-SR (demo)': [], 'bicubic': []}
    figures = []
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
        bic8 = (bic * 255).round().astype(np.uint8)
        for name, img in (('ECMA-SR (demo)', sr), ('bicubic', bic8)):
            kw = dict(crop_border=SCALE, test_y_channel=True)
            scores[name].append((calculate_psnr(img, gt, **kw), calculate_ssim(img, gt, **kw)))
        if out_dir:
            figures.append(comparison(stem, [bic8, sr, gt], [scores['bicubic'][-1][0],
                                                             scores['ECMA-SR (demo)'][-1][0]], out_dir))
    means = {k: tuple(np.mean(v, axis=0)) for k, v in scores.items()}
    return (means, figures) if out_dir else means


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
    scores, figures = evaluate(net_path, opt['network_g'], data_root, out_dir=work)
    print(f"\n{'method':18} {'PSNR (dB)':>10} {'SSIM':>8}")
    for name, (psnr, ssim) in scores.items():
        print(f'{name:18} {psnr:10.3f} {ssim:8.4f}')
    for path in figures:
        print(f'side by side (bicubic | ECMA-SR | ground truth): {path}')
    gain = scores['ECMA-SR (demo)'][0] - scores['bicubic'][0]
    print(f'\nECMA-SR vs bicubic: {gain:+.3f} dB PSNR; wall time {time.time() - start:.0f} s '
          f'(training done at {train_time:.0f} s). Checkpoint: {net_path}')
    return 0 if gain > 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
