"""Test helpers: tiny paired image folders and option files, and running the ``basicsr`` CLI."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import yaml


def smooth_image(rng, h, w):
    """A smooth random colour image (uint8 BGR): upsampled noise, so SR/restoration can learn."""
    small = rng.uniform(0, 255, (max(2, h // 8), max(2, w // 8), 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def make_sr_folders(root, n=6, size=48, scale=2, seed=0):
    """``root/{gt,lq}/imgNN.png`` with lq = MATLAB-bicubic downscale of gt. Returns (gt, lq) dirs."""
    from basicsr.utils.matlab_functions import imresize
    rng = np.random.default_rng(seed)
    gt_dir, lq_dir = osp.join(root, 'gt'), osp.join(root, 'lq')
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(lq_dir, exist_ok=True)
    for i in range(n):
        gt = smooth_image(rng, size, size)
        lq = np.clip(np.round(imresize(gt.astype(np.float64) / 255., 1 / scale) * 255), 0, 255).astype(np.uint8)
        cv2.imwrite(osp.join(gt_dir, f'img{i:02d}.png'), gt)
        cv2.imwrite(osp.join(lq_dir, f'img{i:02d}.png'), lq)
    return gt_dir, lq_dir


def tiny_sr_options(name, gt_dir, lq_dir, scale=2, total_iter=4, save_freq=2):
    """A complete BasicSR train option dict for a tiny ECMASR on CPU."""
    paired = dict(type='PairedImageDataset', dataroot_gt=gt_dir, dataroot_lq=lq_dir, filename_tmpl='{}',
                  io_backend=dict(type='disk'))
    return {
        'name': name, 'model_type': 'ECMAModel', 'scale': scale, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': dict(paired, name='tiny_train', gt_size=32, use_hflip=True, use_rot=True,
                          num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1, prefetch_mode=None),
            'val': dict(paired, name='tiny_val'),
        },
        'network_g': dict(type='ECMASR', upscale=scale, width=8, enc_blocks=[1, 1], kernels=[8, 4],
                          large_kernel_mode='fft'),
        'path': dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        'train': dict(ema_decay=0, optim_g=dict(type='AdamW', lr=1e-3, weight_decay=0, betas=[0.9, 0.9]),
                      scheduler=dict(type='CosineAnnealingRestartLR', periods=[total_iter], restart_weights=[1],
                                     eta_min=1e-7),
                      total_iter=total_iter, warmup_iter=-1,
                      pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
                      fft_opt=dict(type='FFTLoss', loss_weight=0.05, reduction='mean')),
        'val': dict(val_freq=save_freq, save_img=False,
                    metrics=dict(psnr=dict(type='calculate_psnr', crop_border=scale, test_y_channel=True),
                                 ssim=dict(type='calculate_ssim', crop_border=scale, test_y_channel=True))),
        'logger': dict(print_freq=1, save_checkpoint_freq=save_freq, use_tb_logger=False),
        'dist_params': dict(backend='gloo', port=29500),
    }


def write_yaml(path, opt):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def run_cli(args, cwd, timeout=300, env=None):
    """Run ``basicsr <args>`` as the user would (a fresh process); returns CompletedProcess."""
    # one thread: on a busy 2-core machine two OpenMP threads spin-wait and run ~10x slower
    full_env = dict(os.environ, OMP_NUM_THREADS='1')
    full_env.update(env or {})  # callers may override OMP_NUM_THREADS too
    return subprocess.run([sys.executable, '-m', 'ecma_basicsr.cli', *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
