"""Writes the ECMA option files of every paper table (``python options/make_ecma_options.py``).

The ECMA rows share one training recipe (paper Sec. 4: batch 64, 400K iterations, AdamW lr 1e-3,
cosine annealing to 1e-7, 256 crops with flips/rotations, 1.0 x L1 + 0.05 x FFT L1), so the files
are generated from this one description instead of being edited by hand 40 times; a test checks
that the committed files equal what this script writes. Edit here, rerun, commit both.

Where the paper is silent we follow NAFNet (which ECMA cites for its training): AdamW betas
(0.9, 0.9), weight decay 1e-3 for deblurring and 0 for SIDD; 8 GPUs x 8 images; validation every
20K iterations; no EMA. Tables 8/9 ablations train ECMA-T for 200K iterations on GoPro (Sec. 4.5).
Table 10 (inference time) is a benchmark preset (`basicsr bench`), not an option file.
"""
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

RGB = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
       'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False}}
Y4 = {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True},
      'ssim': {'type': 'calculate_ssim', 'crop_border': 4, 'test_y_channel': True}}
# RealBlur's own scoring (ecma_basicsr/metrics/realblur_metric.py): intensity matching + ECC homography, PSNR/SSIM
# over the valid region. Test files only: ECC costs seconds per image, too slow for validation during training.
REALBLUR = {'psnr': {'type': 'calculate_realblur_psnr'}, 'ssim': {'type': 'calculate_realblur_ssim'}}
TEST_METRICS = {'RealBlur-J': (REALBLUR, 'RealBlur scoring: intensity-matched, ECC-aligned'),
                'RealBlur-R': (REALBLUR, 'RealBlur scoring: intensity-matched, ECC-aligned')}

# task -> (dataset name, train lq, train gt, test sets [(name, lq, gt)], weight decay, prep command)
TASKS = {
    'GoPro': ('GoPro', 'datasets/GoPro/train/blur_crops.lmdb', 'datasets/GoPro/train/sharp_crops.lmdb',
              [('GoPro', 'datasets/GoPro/test/input.lmdb', 'datasets/GoPro/test/target.lmdb')], 1e-3,
              'python -m datasets_prep gopro --src <GOPRO_Large> --dst datasets/GoPro'),
    'HIDE': (None, None, None, [('HIDE', 'datasets/HIDE/test/input.lmdb', 'datasets/HIDE/test/target.lmdb')], None,
             'python -m datasets_prep hide --src <HIDE_dataset> --dst datasets/HIDE'),
    'RealBlur-J': ('RealBlur-J', 'datasets/RealBlur_J/train/input.lmdb', 'datasets/RealBlur_J/train/target.lmdb',
                   [('RealBlur-J', 'datasets/RealBlur_J/test/input.lmdb', 'datasets/RealBlur_J/test/target.lmdb')],
                   1e-3, 'python -m datasets_prep realblur_j --src <RealBlur> --dst datasets/RealBlur_J'),
    'RealBlur-R': ('RealBlur-R', 'datasets/RealBlur_R/train/input.lmdb', 'datasets/RealBlur_R/train/target.lmdb',
                   [('RealBlur-R', 'datasets/RealBlur_R/test/input.lmdb', 'datasets/RealBlur_R/test/target.lmdb')],
                   1e-3, 'python -m datasets_prep realblur_r --src <RealBlur> --dst datasets/RealBlur_R'),
    'REDS': ('REDS', 'datasets/REDS/train/train_blur_jpeg.lmdb', 'datasets/REDS/train/train_sharp.lmdb',
             [('REDS-val-300', 'datasets/REDS/val/blur_300.lmdb', 'datasets/REDS/val/sharp_300.lmdb')], 1e-3,
             'python -m datasets_prep reds --src <REDS> --dst datasets/REDS'),
    'SIDD': ('SIDD', 'datasets/SIDD/train/input_crops.lmdb', 'datasets/SIDD/train/gt_crops.lmdb',
             [('SIDD-val', 'datasets/SIDD/val/input_crops.lmdb', 'datasets/SIDD/val/gt_crops.lmdb')], 0.0,
             'python -m datasets_prep sidd --src <SIDD> --dst datasets/SIDD'),
}
SR_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')

# folder -> [(variant, task, paper PSNR/SSIM note)]
TABLES = {
    'table2_gopro': [('T', 'GoPro', '33.19 / 0.962'), ('B', 'GoPro', '34.14 / 0.969')],
    'table4_realblur': [('B', 'RealBlur-J', '32.72 / 0.931'), ('B', 'RealBlur-R', '39.98 / 0.974')],
    'table6_reds': [('T', 'REDS', '28.82 / 0.861'), ('S', 'REDS', '29.12 / 0.868')],
    'table7_sidd': [('T', 'SIDD', '39.86 / 0.960'), ('S', 'SIDD', '40.28 / 0.961')],
}
HIDE_ROWS = [('T', '30.89 / 0.937'), ('B', '31.59 / 0.946')]


def train_name(variant, task, tag=''):
    return f'ECMA-{variant}_{task}{tag}'


def dataset(name, lq, gt, phase):
    d = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': gt, 'dataroot_lq': lq, 'filename_tmpl': '{}',
         'io_backend': {'type': 'lmdb'}}
    if phase == 'train':
        d.update(gt_size=256, use_hflip=True, use_rot=True, num_worker_per_gpu=8, batch_size_per_gpu=8,
                 dataset_enlarge_ratio=1, prefetch_mode=None)
    return d


def network(variant, ablation=None):
    from ecma_basicsr.archs.ecma_arch import ABLATIONS
    net = {'type': 'ECMA', 'variant': variant, 'in_ch': 3}
    for key, value in (ABLATIONS[ablation] if ablation else {}).items():
        net[key] = list(value) if isinstance(value, tuple) else value
    net['large_kernel_mode'] = 'auto'
    return net


def train_options(variant, task, iters=400000, ablation=None):
    ds_name, lq, gt, tests, wd, _ = TASKS[task]
    tag = f'_{ablation}' if ablation else ''
    test_name, test_lq, test_gt = tests[0]
    return {
        'name': train_name(variant, task, tag), 'model_type': 'ECMAModel', 'scale': 1, 'num_gpu': 'auto',
        'manual_seed': 10,
        'datasets': {'train': dataset(ds_name, lq, gt, 'train'), 'val': dataset(test_name, test_lq, test_gt, 'val')},
        'network_g': network(variant, ablation),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': wd, 'betas': [0.9, 0.9]},
            'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                          'eta_min': 1e-7},
            'total_iter': iters, 'warmup_iter': -1, 'grad_clip': None,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.05, 'reduction': 'mean'},
        },
        'val': {'val_freq': 20000, 'save_img': False, 'metrics': RGB},
        'logger': {'print_freq': 200, 'save_checkpoint_freq': 5000, 'use_tb_logger': True,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }


def test_options(variant, trained_on, tests, metrics=RGB, network_g=None, scale=1, tag=''):
    return {
        'name': f'{train_name(variant, trained_on, tag)}_test', 'model_type': 'ECMAModel', 'scale': scale,
        'num_gpu': 'auto', 'manual_seed': 10,
        'datasets': {f'test_{i}': dataset(n, lq, gt, 'test') for i, (n, lq, gt) in enumerate(tests, 1)},
        'network_g': network_g or network(variant),
        'path': {'pretrain_network_g': f'experiments/{train_name(variant, trained_on, tag)}/models/net_g_latest.pth',
                 'param_key_g': 'params', 'strict_load_g': True},
        'val': {'save_img': False, 'suffix': None, 'metrics': metrics},
    }


def sr_test_options():
    tests = [(s, f'datasets/SR_benchmark/{s}/LR_bicubic/X4', f'datasets/SR_benchmark/{s}/HR') for s in SR_SETS]
    opt = test_options('SR', 'DIV2K', tests, Y4, network_g={'type': 'ECMASR', 'upscale': 4, 'in_ch': 3, 'width': 64,
                                                               'enc_blocks': [10, 1], 'kernels': [32, 8],
                                                               'large_kernel_mode': 'auto'}, scale=4)
    opt['name'] = 'ECMA_SR_x4_test'
    opt['path']['pretrain_network_g'] = 'experiments/ECMA_SR_x4_DIV2K/models/net_g_latest.pth'
    for d in opt['datasets'].values():
        d['io_backend'] = {'type': 'disk'}
        d['filename_tmpl'] = '{}_LRBI_x4' if d['name'] == 'Manga109' else '{}x4'
    return opt


def header(title, prep, run, paper=None):
    lines = [f'# {title}', f'# Data: {prep}', f'# Run:  {run}']
    if paper:
        lines.insert(1, f'# Paper (PSNR / SSIM): {paper}')
    return '\n'.join(lines) + '\n'


def to_yaml(opt):
    import yaml
    return yaml.safe_dump(opt, sort_keys=False, default_flow_style=None, width=120)


def all_files():
    """{relative path: text} of every generated option file."""
    files = {}

    def add(folder, fname, title, prep, opt, paper=None):
        rel = f'{folder}/{fname}'
        verb = 'train' if fname.endswith('_train.yml') else 'test'
        files[rel] = header(title, prep, f'basicsr {verb} -opt options/{rel}', paper) + to_yaml(opt)

    for folder, rows in TABLES.items():
        for variant, task, paper in rows:
            prep = TASKS[task][5]
            add(folder, f'ECMA-{variant}_{task}_train.yml', f'ECMA-{variant} trained on {task} (paper Sec. 4 recipe).',
                prep, train_options(variant, task), paper)
            metrics, protocol = TEST_METRICS.get(task, (RGB, 'RGB, no crop'))
            add(folder, f'ECMA-{variant}_{task}_test.yml', f'ECMA-{variant} on the {task} test set, {protocol}.',
                prep, test_options(variant, task, TASKS[task][3], metrics), paper)
    for variant, paper in HIDE_ROWS:
        add('table3_hide', f'ECMA-{variant}_HIDE_test.yml', f'ECMA-{variant} trained on GoPro, tested on HIDE.',
            TASKS['HIDE'][5], test_options(variant, 'GoPro', TASKS['HIDE'][3]), paper)
    add('table5_sr_x4', 'ECMA-SR_x4_test.yml', 'ECMA-SR x4 on the five SR test sets (Y channel, border 4).',
        'python -m datasets_prep srbench --src <benchmark> --dst datasets/SR_benchmark', sr_test_options(),
        'Set5 32.50/0.899, Set14 28.89/0.788, B100 27.81/0.744, Urban100 26.82/0.806, Manga109 31.20/0.917 (train: options/train_ECMA_SR_x4.yml)')
    from ecma_basicsr.archs.ecma_arch import ABLATIONS
    for ablation in ABLATIONS:
        tag = f'_{ablation}'
        add('table8_9_ablation', f'ECMA-T{tag}_train.yml', f'Ablation {ablation}: ECMA-T, GoPro, 200K iterations.',
            TASKS['GoPro'][5], train_options('T', 'GoPro', iters=200000, ablation=ablation))
        add('table8_9_ablation', f'ECMA-T{tag}_test.yml', f'Ablation {ablation}: GoPro test, RGB, no crop.',
            TASKS['GoPro'][5],
            test_options('T', 'GoPro', TASKS['GoPro'][3], network_g=network('T', ablation), tag=tag))
    return files


def main():
    import os
    for rel, text in all_files().items():
        path = osp.join(HERE, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    print(f'wrote {len(all_files())} option files under {HERE}')


if __name__ == '__main__':
    main()
