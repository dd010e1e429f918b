"""``basicsr race``: train every contender through ``basicsr train``, evaluate, report.

Steps (all under ``--workdir``, default ``race_run/``; the report goes to ``--out``, default
``results/race/``):

1. the sample set of ``python -m datasets_prep sample --task sr`` (DIV2K layout, scikit-image's
   photographs; chelsea and coffee held out). SR trains on its HR/LR x4 LMDBs; denoising trains on
   its clean HR LMDB through ``GaussianNoiseDataset`` (fresh sigma-25 noise per crop). Both validate
   on the held-out photos every tenth of the run, which gives the learning curves;
2. per contender, an option file (:func:`race_options`) and ``basicsr train -opt FILE`` in a
   subprocess with ``OMP_NUM_THREADS=--threads``, ``--jobs`` of them at a time;
3. per contender, :mod:`.evaluate` in a subprocess on the task's real test sets from ``--data``
   (default ``../shared/data`` beside the checkout);
4. ``race.json``, ``results.md`` and ``curves.png`` (:mod:`.report`).

Training is seeded (``manual_seed``; one thread per run, so a rerun repeats it); the test noise is
the bench protocol's per-image seed. ``--quick`` trains each contender for a few iterations and scores
three images per set, to check the whole path in minutes.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import RaceError
from .contenders import ETA_MIN, OPTIMIZER, REPO, TASKS, losses_of, select

DEFAULT_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')
QUICK_LIMIT = 3  # test images per set in --quick mode
SEED = 10


def experiment_name(task, contender):
    return f'race_{task.name}_{contender.label}'


def race_options(task, contender, data_root, iters, seed=SEED):
    """The option dict that trains ``contender`` for ``task`` on the sample set in ``data_root``."""
    name = experiment_name(task, contender)
    valid_hr = osp.join(data_root, 'DIV2K_valid_HR')
    common = dict(io_backend={'type': 'lmdb'}, use_hflip=True, use_rot=True, num_worker_per_gpu=0,
                  batch_size_per_gpu=task.batch, dataset_enlarge_ratio=1, prefetch_mode=None)
    if task.scale == 1:
        train = dict(name='sample-train', type='GaussianNoiseDataset', sigma=task.sigma, gt_size=task.crop,
                     dataroot_gt=osp.join(data_root, 'DIV2K_train_HR_sub.lmdb'), **common)
        val = dict(name='held-out', type='GaussianNoiseDataset', sigma=task.sigma, seed=0, dataroot_gt=valid_hr,
                   io_backend={'type': 'disk'})
    else:
        s = task.scale
        train = dict(name='sample-train', type='PairedImageDataset', filename_tmpl='{}', gt_size=task.crop,
                     dataroot_gt=osp.join(data_root, 'DIV2K_train_HR_sub.lmdb'),
                     dataroot_lq=osp.join(data_root, f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb'), **common)
        val = dict(name='held-out', type='PairedImageDataset', dataroot_gt=valid_hr,
                   dataroot_lq=osp.join(data_root, 'DIV2K_valid_LR_bicubic', f'X{s}'), filename_tmpl=f'{{}}x{s}',
                   io_backend={'type': 'disk'})
    every = max(1, iters // 10)
    return {
        'name': name, 'model_type': 'ECMAModel', 'scale': task.scale, 'num_gpu': 0, 'manual_seed': seed,
        'datasets': {'train': train, 'val': val},
        'network_g': dict(contender.network),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0, 'optim_g': dict(OPTIMIZER),
                  'scheduler': dict(type='CosineAnnealingRestartLR', periods=[iters], restart_weights=[1],
                                    eta_min=ETA_MIN),
                  'total_iter': iters, 'warmup_iter': -1, **losses_of(task.name, contender)},
        'val': {'val_freq': every, 'save_img': False,
                'metrics': {'psnr': dict(type='calculate_psnr', **task.metric)}},
        'logger': {'print_freq': every, 'save_checkpoint_freq': iters, 'use_tb_logger': False},
    }


def _env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES='')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, env.get('PYTHONPATH')) if p)
    return env


def _run(cmd, cwd, log_path, threads):
    """Run ``cmd`` with its output in ``log_path``; (return code, wall seconds)."""
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        code = subprocess.call(cmd, cwd=cwd, env=_env(threads), stdout=log, stderr=subprocess.STDOUT)
    return code, time.perf_counter() - start


def _tail(path, n=800):
    with open(path, errors='replace') as f:
        return f.read()[-n:].strip()


def run_contender(task, contender, work, data_root, testsets, iters, threads, limit, seed=SEED, log=print):
    """Train and evaluate one contender; the result entry of ``race.json``."""
    import yaml

    from ecma_basicsr.engine.model import read_metric_history
    name = experiment_name(task, contender)
    opt = race_options(task, contender, data_root, iters, seed)
    opt_path = osp.join(work, 'options', f'{name}.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    exp = osp.join(work, 'experiments', name)
    shutil.rmtree(exp, ignore_errors=True)  # a race trains afresh; BasicSR would archive the old run
    entry = dict(label=contender.label, role=contender.role, note=contender.note, network=contender.network,
                 losses=opt['train'].get('pixel_opt', {}).get('type'), option_file=opt_path)
    log(f'[race] {task.name}/{contender.label}: basicsr train -opt {opt_path}')
    train_log = osp.join(work, 'logs', f'{name}.train.log')
    code, seconds = _run([sys.executable, '-m', 'ecma_basicsr.cli', 'train', '-opt', opt_path], work, train_log,
                         threads)
    # BasicSR validates once more after the loop, logged as iteration total + 1: the same weights as at total
    curve = {min(e['iter'], iters): e['psnr'] for e in read_metric_history(exp)}
    entry.update(train_seconds=seconds, curve=sorted(curve.items()))
    weights = osp.join(exp, 'models', 'net_g_latest.pth')
    if code or not osp.isfile(weights):
        entry['error'] = f'training failed (exit {code}); log {train_log}: {_tail(train_log)}'
        log(f'[race] {task.name}/{contender.label}: {entry["error"]}')
        return entry
    out = osp.join(work, 'logs', f'{name}.scores.json')
    cmd = [sys.executable, '-m', 'ecma_basicsr.race.evaluate', '--network', json.dumps(contender.network),
           '--weights', weights, '--scale', str(task.scale), '--out', out] + \
        [arg for t in testsets for arg in ('--testset', t)] + (['--limit', str(limit)] if limit else [])
    eval_log = osp.join(work, 'logs', f'{name}.eval.log')
    code, eval_seconds = _run(cmd, work, eval_log, threads)
    if code:
        entry['error'] = f'evaluation failed (exit {code}); log {eval_log}: {_tail(eval_log)}'
        log(f'[race] {task.name}/{contender.label}: {entry["error"]}')
        return entry
    with open(out) as f:
        entry['scores'] = json.load(f)
    entry['eval_seconds'] = eval_seconds
    log(f'[race] {task.name}/{contender.label}: trained in {seconds:.0f} s; ' + ', '.join(
        f"{k} {v['psnr']:.2f} dB" for k, v in entry['scores'].items()))
    return entry


def testset_args(task, data):
    """The task's test sets in the bench grammar, checked to exist under ``data``."""
    out = []
    for name, bench_task, folder in task.testsets:
        path = osp.join(data, folder)
        if not osp.isdir(path):
            raise RaceError(f"test set {name} not found at '{path}'; pass --data with the folder that holds "
                            f"{', '.join(f for _, _, f in task.testsets)} (../shared/data beside the checkout).")
        out.append(f'{name}={bench_task}:{path}')
    return out


def floors(task, testsets, limit):
    """``{set: {'psnr', 'ssim', 'images'}}`` of the task's reference (identity for noise, bicubic for SR)."""
    from ecma_basicsr.bench.testsets import parse_testset, reference_scores
    out = {}
    for text in testsets:
        ts = parse_testset(text, limit=limit)
        psnr, ssim, n = reference_scores(ts, task.scale)
        out[ts.name] = dict(psnr=psnr, ssim=ssim, images=n)
    return out


def build_parser():
    parser = argparse.ArgumentParser(
        prog='basicsr race', description='Equal-budget training race: ECMA, its Table 8/9 ablations, NAFNet and '
        'SwinIR trained through basicsr train on the sample set, scored on real test sets.')
    parser.add_argument('--tasks', default=','.join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument('--contenders', default=None,
                        help='comma-separated labels (default: all of each task; see ecma_basicsr/race/contenders.py)')
    parser.add_argument('--quick', action='store_true', help='a few iterations and 3 test images per set')
    parser.add_argument('--iters', type=int, default=None, help="override every task's iterations")
    parser.add_argument('--limit', type=int, default=None, help='test images per set (default: all; --quick: 3)')
    parser.add_argument('--seed', type=int, default=SEED, help=f'manual_seed of every training (default {SEED})')
    parser.add_argument('--jobs', type=int, default=2, help='trainings at a time (default 2)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per job (default 1)')
    parser.add_argument('--data', default=DEFAULT_DATA, help='folder with the test sets (default ../shared/data)')
    parser.add_argument('--workdir', default='race_run', help='sample set, option files, experiments, logs')
    parser.add_argument('--out', default=osp.join('results', 'race'), help='report folder')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for flag in ('jobs', 'threads'):
        if getattr(args, flag) < 1:
            raise RaceError(f'--{flag} must be at least 1, got {getattr(args, flag)}.')
    if args.iters is not None and args.iters < 1:
        raise RaceError(f'--iters must be at least 1, got {args.iters}.')
    chosen = select([t for t in args.tasks.split(',') if t],
                    [c for c in args.contenders.split(',') if c] if args.contenders else None)
    limit = args.limit or (QUICK_LIMIT if args.quick else None)
    data = osp.abspath(args.data)
    sets = {task.name: testset_args(task, data) for task, _ in chosen}

    import ecma_basicsr
    ecma_basicsr.register()
    from datasets_prep.sample import make_sample
    from ecma_basicsr.bench.measure import device_name
    from ecma_basicsr.bench.report import _git

    from .contenders import budget, check_budget
    from .report import write_report

    start = time.time()
    work, out = osp.abspath(args.workdir), osp.abspath(args.out)
    for sub in ('options', 'logs', 'experiments'):
        os.makedirs(osp.join(work, sub), exist_ok=True)
    data_root = osp.join(work, 'datasets', 'DIV2K')
    if not osp.isfile(osp.join(data_root, 'SAMPLE.json')):
        print(f'[race] building the sample set in {data_root} ...', flush=True)
        make_sample('sr', data_root)

    run = dict(command='basicsr race ' + ' '.join(argv if argv is not None else sys.argv[1:]),
               started=time.strftime('%Y-%m-%d %H:%M:%S %Z'), load_at_start=os.getloadavg(), jobs=args.jobs,
               threads=args.threads, quick=args.quick, limit=limit, seed=args.seed, tasks={},
               git=_git('describe', '--always', '--dirty'), cpu=device_name('cpu'))
    jobs = []
    for task, contenders in chosen:
        sizes = budget(task, contenders)
        spread = check_budget(task, sizes)
        iters = args.iters or (task.quick_iters if args.quick else task.iters)
        run['tasks'][task.name] = dict(iters=iters, crop=task.crop, batch=task.batch, scale=task.scale,
                                       sigma=task.sigma, budget_spread=spread, testsets=sets[task.name],
                                       contenders=[])
        for c in contenders:
            params, macs = sizes[c.label]
            jobs.append((task, c, iters, dict(params=params, macs_per_pixel=macs)))
    print(f'[race] {len(jobs)} contenders, {args.jobs} at a time, {args.threads} thread(s) each', flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [(task, size, pool.submit(run_contender, task, c, work, data_root, sets[task.name], iters,
                                            args.threads, limit, args.seed, lambda m: print(m, flush=True)))
                   for task, c, iters, size in jobs]
        for task, _ in chosen:  # the floors need no network: computed while the contenders train
            run['tasks'][task.name]['floors'] = floors(task, sets[task.name], limit)
        for task, size, future in futures:
            run['tasks'][task.name]['contenders'].append(dict(future.result(), **size))
    run['wall_seconds'] = time.time() - start
    run['load_at_end'] = os.getloadavg()
    paths = write_report(out, run)
    print(f"[race] done in {run['wall_seconds'] / 60:.1f} min: " + ', '.join(paths), flush=True)
    failed = [c['label'] for t in run['tasks'].values() for c in t['contenders'] if 'error' in c]
    if failed:
        print(f"[race] failed: {', '.join(failed)} (see the logs in {osp.join(work, 'logs')})", file=sys.stderr)
        return 1
    return 0
