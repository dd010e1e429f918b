"""Writes every ECMA option file: ``python options/make_ecma_options.py`` from the repository root.

It imports ``ecma_basicsr`` and ``datasets_prep``, so run it where they import: after ``make
install`` (which installs the checkout in development mode) or with ``PYTHONPATH=.``.

The ECMA rows of the paper share one training recipe (paper Sec. 4: batch 64, 400K iterations,
AdamW lr 1e-3, cosine annealing to 1e-7, 256x256 crops with flips/rotations; loss 1.0 x L1 +
0.05 x FFT L1), so the files are generated from this one description instead of being edited by
hand one by one; a test checks that the committed files equal what this script writes. Edit here,
rerun, commit both.

Where the paper is silent we follow NAFNet (which ECMA cites for its training): AdamW betas
(0.9, 0.9), weight decay 1e-3 for deblurring and 0 for SIDD and SR; the batch of 64 as 8 processes
(GPUs) x 8 images; validation every 20K iterations (SR: 5K); no EMA. Tables 8/9 ablations train
ECMA-T for 200K iterations on GoPro (Sec. 4.5). SR: Table 5 is x4 (HR crop 256, so the LR patch is
64x64); the x2 and x3 files are ours, with the same recipe and the same 64x64 LR patch (HR 128 /
192; an HR crop of 256 is not divisible by 3). Table 10 (inference time) is a ``basicsr bench``
preset, not an option file.

Every training file carries ``recipe: {global_batch_size, num_processes}``, the batch it was
written for, so that a run with another process count can say so (BasicSR ignores unknown
top-level keys). The files are written in BasicSR's own option-file style: block mappings,
flow lists, ``~`` for null, ``!!float`` for exponents, a comment above each section.
"""
import os
import os.path as osp

import yaml

from datasets_prep.commands import COMMANDS

HERE = osp.dirname(osp.abspath(__file__))
GENERATOR = 'options/make_ecma_options.py'

# Paper Sec. 4: "a batch size of 64"; 8 processes (GPUs) x 8 images, as NAFNet trains.
RECIPE = {'global_batch_size': 64, 'num_processes': 8}
PER_PROCESS = RECIPE['global_batch_size'] // RECIPE['num_processes']

RGB = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
       'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False}}
# RealBlur's own scoring (ecma_basicsr/metrics/realblur_metric.py): intensity matching + ECC homography, PSNR/SSIM
# over the valid region. Test files only: ECC costs seconds per image, too slow for validation during training.
REALBLUR = {'psnr': {'type': 'calculate_realblur_psnr'}, 'ssim': {'type': 'calculate_realblur_ssim'}}
TEST_METRICS = {'RealBlur-J': (REALBLUR, 'RealBlur scoring: intensity-matched, ECC-aligned'),
                'RealBlur-R': (REALBLUR, 'RealBlur scoring: intensity-matched, ECC-aligned')}


def y_metrics(scale):
    """PSNR/SSIM on the Y channel with a border of ``scale`` pixels, the SR convention."""
    return {m: {'type': f'calculate_{m}', 'crop_border': scale, 'test_y_channel': True} for m in ('psnr', 'ssim')}


# task -> (train set name, train lq, train gt, [(test name, lq, gt)], weight decay, datasets_prep command)
TASKS = {
    'GoPro': ('GoPro', 'datasets/GoPro/train/blur_crops.lmdb', 'datasets/GoPro/train/sharp_crops.lmdb',
              [('GoPro', 'datasets/GoPro/test/input.lmdb', 'datasets/GoPro/test/target.lmdb')], 1e-3, 'gopro'),
    'HIDE': (None, None, None, [('HIDE', 'datasets/HIDE/test/input.lmdb', 'datasets/HIDE/test/target.lmdb')], None,
             'hide'),
    'RealBlur-J': ('RealBlur-J', 'datasets/RealBlur_J/train/input.lmdb', 'datasets/RealBlur_J/train/target.lmdb',
                   [('RealBlur-J', 'datasets/RealBlur_J/test/input.lmdb', 'datasets/RealBlur_J/test/target.lmdb')],
                   1e-3, 'realblur_j'),
    'RealBlur-R': ('RealBlur-R', 'datasets/RealBlur_R/train/input.lmdb', 'datasets/RealBlur_R/train/target.lmdb',
                   [('RealBlur-R', 'datasets/RealBlur_R/test/input.lmdb', 'datasets/RealBlur_R/test/target.lmdb')],
                   1e-3, 'realblur_r'),
    'REDS': ('REDS', 'datasets/REDS/train/train_blur_jpeg.lmdb', 'datasets/REDS/train/train_sharp.lmdb',
             [('REDS-val-300', 'datasets/REDS/val/blur_300.lmdb', 'datasets/REDS/val/sharp_300.lmdb')], 1e-3, 'reds'),
    'SIDD': ('SIDD', 'datasets/SIDD/train/input_crops.lmdb', 'datasets/SIDD/train/gt_crops.lmdb',
             [('SIDD-val', 'datasets/SIDD/val/input_crops.lmdb', 'datasets/SIDD/val/gt_crops.lmdb')], 0.0, 'sidd'),
}
SR_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')
SR_LR_PATCH = 64

# folder -> [(variant, task, paper PSNR / SSIM)]
TABLES = {
    'table2_gopro': [('T', 'GoPro', '33.19 / 0.962'), ('B', 'GoPro', '34.14 / 0.969')],
    'table4_realblur': [('B', 'RealBlur-J', '32.72 / 0.931'), ('B', 'RealBlur-R', '39.98 / 0.974')],
    'table6_reds': [('T', 'REDS', '28.82 / 0.861'), ('S', 'REDS', '29.12 / 0.868')],
    'table7_sidd': [('T', 'SIDD', '39.86 / 0.960'), ('S', 'SIDD', '40.28 / 0.961')],
}
HIDE_ROWS = [('T', '30.89 / 0.937'), ('B', '31.59 / 0.946')]
# scale -> (folder of the test file, paper PSNR/SSIM or None)
SR_SCALES = {
    2: ('sr_x2_x3', None),
    3: ('sr_x2_x3', None),
    4: ('table5_sr_x4', 'Set5 32.50/0.899, Set14 28.89/0.788, B100 27.81/0.744, Urban100 26.82/0.806, '
                        'Manga109 31.20/0.917'),
}

# Top-level key -> the comment written above it, in BasicSR's order.
SECTIONS = {
    'name': 'general settings',
    'recipe': 'the recipe these settings were written for (BasicSR ignores this key)',
    'datasets': 'dataset and data loader settings',
    'network_g': 'network structures',
    'path': 'path',
    'train': 'training settings',
    'val': 'validation settings',
    'logger': 'logging settings',
    'dist_params': 'dist training settings',
}
COMMENTS = {
    ('num_gpu',): "'auto': every visible GPU (0 runs on the CPU)",
    ('datasets', 'train', 'batch_size_per_gpu'):
        f"x {RECIPE['num_processes']} processes = the global batch {RECIPE['global_batch_size']}",
    ('network_g', 'upscale'): "width, blocks, kernels: ECMASR's defaults, the paper's ECMA-SR (Table 1)",
}


# ----------------------------------------------------------------------------------- the options
def train_name(variant, task, tag=''):
    return f'ECMA-{variant}_{task}{tag}'


def sr_name(scale):
    return f'ECMA_SR_x{scale}_DIV2K'


def dataset(name, lq, gt, phase, gt_size=256, backend='lmdb', tmpl='{}'):
    d = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': gt, 'dataroot_lq': lq, 'filename_tmpl': tmpl,
         'io_backend': {'type': backend}}
    if phase == 'train':
        d.update(gt_size=gt_size, use_hflip=True, use_rot=True, num_worker_per_gpu=8, batch_size_per_gpu=PER_PROCESS,
                 dataset_enlarge_ratio=1, prefetch_mode=None)
    return d


def network(variant, ablation=None):
    from ecma_basicsr.archs.ecma_arch import ABLATIONS
    net = {'type': 'ECMA', 'variant': variant, 'in_ch': 3}
    for key, value in (ABLATIONS[ablation] if ablation else {}).items():
        net[key] = list(value) if isinstance(value, tuple) else value
    net['large_kernel_mode'] = 'auto'
    return net


def sr_network(scale):
    # Width, blocks and kernels are ECMASR's defaults, which are the paper's ECMA-SR (Table 1).
    return {'type': 'ECMASR', 'upscale': scale, 'in_ch': 3, 'large_kernel_mode': 'auto'}


def train_options(name, train_ds, val_ds, network_g, weight_decay, iters=400000, scale=1, metrics=RGB,
                  val_freq=20000, print_freq=200):
    return {
        'name': name, 'model_type': 'ECMAModel', 'scale': scale, 'num_gpu': 'auto', 'manual_seed': 10,
        'recipe': dict(RECIPE),
        'datasets': {'train': train_ds, 'val': val_ds},
        'network_g': network_g,
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': weight_decay, 'betas': [0.9, 0.9]},
            'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                          'eta_min': 1e-7},
            'total_iter': iters, 'warmup_iter': -1, 'grad_clip': None,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'fft_opt': {'type': 'FFTLoss', 'loss_weight': 0.05, 'reduction': 'mean'},
        },
        'val': {'val_freq': val_freq, 'save_img': False, 'metrics': metrics},
        'logger': {'print_freq': print_freq, 'save_checkpoint_freq': 5000, 'use_tb_logger': True,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }


def restoration_train(variant, task, iters=400000, ablation=None):
    ds_name, lq, gt, tests, wd, _ = TASKS[task]
    test_name, test_lq, test_gt = tests[0]
    return train_options(train_name(variant, task, f'_{ablation}' if ablation else ''),
                         dataset(ds_name, lq, gt, 'train'), dataset(test_name, test_lq, test_gt, 'val'),
                         network(variant, ablation), wd, iters)


def test_options(name, weights, datasets, network_g, metrics=RGB, scale=1):
    return {
        'name': name, 'model_type': 'ECMAModel', 'scale': scale, 'num_gpu': 'auto', 'manual_seed': 10,
        'datasets': {f'test_{i}': d for i, d in enumerate(datasets, 1)},
        'network_g': network_g,
        'path': {'pretrain_network_g': f'experiments/{weights}/models/net_g_latest.pth', 'param_key_g': 'params',
                 'strict_load_g': True},
        'val': {'save_img': False, 'suffix': None, 'metrics': metrics},
    }


def restoration_test(variant, trained_on, tests, network_g=None, tag='', metrics=RGB):
    run = train_name(variant, trained_on, tag)
    return test_options(f'{run}_test', run, [dataset(n, lq, gt, 'test') for n, lq, gt in tests],
                        network_g or network(variant), metrics)


def sr_lr(name, scale):
    return f'datasets/SR_benchmark/{name}/LR_bicubic/X{scale}'


def sr_train(scale):
    train = dataset('DIV2K', f'datasets/DIV2K/DIV2K_train_LR_bicubic_X{scale}_sub.lmdb',
                    'datasets/DIV2K/DIV2K_train_HR_sub.lmdb', 'train', gt_size=SR_LR_PATCH * scale)
    val = dataset('Set5', sr_lr('Set5', scale), f'datasets/SR_benchmark/Set5/GTmod{scale}', 'val', backend='disk',
                  tmpl=f'{{}}x{scale}')
    return train_options(sr_name(scale), train, val, sr_network(scale), 0, scale=scale, metrics=y_metrics(scale),
                         val_freq=5000, print_freq=100)


def sr_test(scale):
    # datasets_prep writes LR_bicubic/X<s>/<stem>x<s>.png for every set, Manga109 included.
    sets = [dataset(s, sr_lr(s, scale), f'datasets/SR_benchmark/{s}/HR', 'test', backend='disk', tmpl=f'{{}}x{scale}')
            for s in SR_SETS]
    return test_options(f'ECMA_SR_x{scale}_test', sr_name(scale), sets, sr_network(scale), y_metrics(scale), scale)


# ------------------------------------------------------------------------------------ the writer
def _scalar(value):
    if value is None:
        return '~'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value and (abs(value) < 1e-2 or abs(value) >= 1e5):
            # PyYAML reads '1e-3' (no dot) as a string; BasicSR's files write '!!float 1e-3'.
            mantissa, exponent = f'{value:e}'.split('e')
            return f"!!float {mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return repr(value)
    if isinstance(value, str):
        try:
            plain = yaml.safe_load(f'k: {value}') == {'k': value}
        except yaml.YAMLError:
            plain = False
        return value if plain else "'" + value.replace("'", "''") + "'"
    raise TypeError(f'no YAML form for {type(value).__name__} {value!r}')


def _lines(mapping, indent, path, comments):
    out = []
    for key, value in mapping.items():
        comment = comments.get(path + (key,))
        tail = f'  # {comment}' if comment else ''
        lead = ' ' * indent + f'{key}:'
        if isinstance(value, dict) and value:
            out.append(lead + tail)
            out += _lines(value, indent + 2, path + (key,), comments)
        elif isinstance(value, (list, tuple)):
            out.append(f"{lead} [{', '.join(_scalar(v) for v in value)}]{tail}")
        elif isinstance(value, dict):
            out.append(f'{lead} {{}}{tail}')
        else:
            out.append(f'{lead} {_scalar(value)}{tail}')
    return out


def to_yaml(opt, comments=COMMENTS):
    """``opt`` in BasicSR's option-file style; ``comments`` maps key paths to end-of-line comments."""
    out = []
    for key, value in opt.items():
        if key in SECTIONS:
            out += ([''] if out else []) + [f'# {SECTIONS[key]}']
        out += _lines({key: value}, 0, (), comments)
    return '\n'.join(out) + '\n'


def header(title, data, run, paper=None, recipe=None):
    """The comment block at the top of a file: what it is, that it is generated, the batch, data, run."""
    lines = [f'# {title}']
    if paper:
        lines.append(f'# Paper (PSNR / SSIM): {paper}')
    lines.append(f'# Generated by {GENERATOR}; edit that and rerun it, not this file.')
    if recipe:
        lines.append(f"# {recipe}: global batch {RECIPE['global_batch_size']} = {PER_PROCESS} images per process x "
                     f"{RECIPE['num_processes']} processes (GPUs).")
    for i, command in enumerate(data):
        lines.append(f"# {'Data:' if i == 0 else '     '} {command}")
    lines += [f'# Run:  {line}' if i == 0 else f'#       {line}' for i, line in enumerate(run)]
    return '\n'.join(lines) + '\n'


def train_header(title, rel, data, paper=None):
    n = RECIPE['num_processes']
    run = [f'torchrun --standalone --nproc_per_node={n} -m ecma_basicsr.cli train -opt options/{rel} '
           '--launcher pytorch',
           f'(with N processes instead of {n}, set datasets:train:batch_size_per_gpu to '
           f"{RECIPE['global_batch_size']} / N to keep the recipe)"]
    return header(title, data, run, paper, recipe='Recipe')


def test_header(title, rel, data, trained_by, paper=None):
    return header(title, data, [f'basicsr test -opt options/{rel}'], paper,
                  recipe=f'Weights from options/{trained_by}, trained with')


def all_options():
    """``{relative path: (header text, option dict)}`` of every generated file."""
    files = {}
    for folder, rows in TABLES.items():
        for variant, task, paper in rows:
            data = [COMMANDS[TASKS[task][5]].usage()]
            train_rel = f'{folder}/ECMA-{variant}_{task}_train.yml'
            files[train_rel] = (train_header(f'ECMA-{variant} trained on {task} (paper Sec. 4 recipe).', train_rel,
                                             data, paper), restoration_train(variant, task))
            rel = f'{folder}/ECMA-{variant}_{task}_test.yml'
            metrics, protocol = TEST_METRICS.get(task, (RGB, 'RGB, no crop'))
            files[rel] = (test_header(f'ECMA-{variant} on the {task} test set, {protocol}.', rel, data, train_rel,
                                      paper), restoration_test(variant, task, TASKS[task][3], metrics=metrics))
    for variant, paper in HIDE_ROWS:
        rel = f'table3_hide/ECMA-{variant}_HIDE_test.yml'
        files[rel] = (test_header(f'ECMA-{variant} trained on GoPro, tested on HIDE.', rel,
                                  [COMMANDS['hide'].usage()], f'table2_gopro/ECMA-{variant}_GoPro_train.yml', paper),
                      restoration_test(variant, 'GoPro', TASKS['HIDE'][3]))
    for scale, (folder, paper) in SR_SCALES.items():
        train_rel = f'train_ECMA_SR_x{scale}.yml'
        where = 'paper Table 5, Sec. 4 recipe' if scale == 4 else 'not in the paper: the x4 recipe'
        files[train_rel] = (train_header(
            f'ECMA-SR x{scale} trained on DIV2K ({where}); HR crop {SR_LR_PATCH * scale} = LR patch '
            f'{SR_LR_PATCH}x{SR_LR_PATCH}.', train_rel, [COMMANDS['div2k'].usage(), COMMANDS['srbench'].usage()],
            paper), sr_train(scale))
        rel = f'{folder}/ECMA-SR_x{scale}_test.yml'
        files[rel] = (test_header(f'ECMA-SR x{scale} on the five SR test sets (Y channel, border {scale}).', rel,
                                  [COMMANDS['srbench'].usage()], train_rel, paper), sr_test(scale))
    from ecma_basicsr.archs.ecma_arch import ABLATIONS
    gopro = [COMMANDS['gopro'].usage()]
    for ablation in ABLATIONS:
        tag = f'_{ablation}'
        train_rel = f'table8_9_ablation/ECMA-T{tag}_train.yml'
        files[train_rel] = (train_header(f'Ablation {ablation}: ECMA-T, GoPro, 200K iterations (paper Sec. 4.5).',
                                         train_rel, gopro),
                            restoration_train('T', 'GoPro', iters=200000, ablation=ablation))
        rel = f'table8_9_ablation/ECMA-T{tag}_test.yml'
        files[rel] = (test_header(f'Ablation {ablation}: GoPro test, RGB, no crop.', rel, gopro, train_rel),
                      restoration_test('T', 'GoPro', TASKS['GoPro'][3], network_g=network('T', ablation), tag=tag))
    return files


def all_files():
    """``{relative path: text}`` of every generated option file."""
    return {rel: head + '\n' + to_yaml(opt) for rel, (head, opt) in all_options().items()}


def main():
    files = all_files()
    for rel, text in files.items():
        path = osp.join(HERE, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    print(f'wrote {len(files)} option files under {HERE}')


if __name__ == '__main__':
    main()
