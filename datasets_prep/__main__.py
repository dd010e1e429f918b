"""Command line: ``python -m datasets_prep <dataset> --src <unpacked archive> --dst datasets/<Name>``.

Subcommands: div2k, set5, set14, b100, urban100, manga109, srbench (every SR test set under a
benchmark root), gopro, hide, realblur_j, realblur_r, reds, sidd, sample, verify. Each prints
what it found and what it skipped; a finished output is never rebuilt (delete it to force that).
Errors in the source layout or images exit with status 2 and a message naming the file or
folder; ``verify`` exits with 1 when it finds a problem.
"""
import argparse
import sys

from .common import PrepError, check_workers


def _common(p, dst_default=None, src=True):
    if src:
        p.add_argument('--src', required=True, help='folder where the archive(s) were unpacked')
    p.add_argument('--dst', required=dst_default is None, default=dst_default,
                   help=f'output folder{f" (default {dst_default})" if dst_default else ""}')
    p.add_argument('--workers', type=int, default=1, help='processes for reading/encoding (default 1)')
    p.add_argument('--map-size', type=int, default=None, help=argparse.SUPPRESS)  # initial LMDB map (tests)


def _crop(p, crop, step):
    p.add_argument('--crop', type=int, default=crop, help=f'sub-image size (default {crop})')
    p.add_argument('--step', type=int, default=step, help=f'sub-image stride (default {step})')


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m datasets_prep', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True, metavar='<subcommand>')

    p = sub.add_parser('div2k', help='DIV2K: HR/LR sub-image LMDBs (train) and LR folders (valid)')
    _common(p, 'datasets/DIV2K')
    _crop(p, 480, 240)
    p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4])
    p.add_argument('--splits', nargs='+', choices=['train', 'valid'], default=['train', 'valid'])

    from .sr import SR_SETS
    for name in SR_SETS:
        p = sub.add_parser(name.lower(), help=f'{name}: HR, GTmod<s> and LR_bicubic/X<s> folders')
        _common(p, f'datasets/SR_benchmark/{name}')
        p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4])
    p = sub.add_parser('srbench', help='every SR test set found under a benchmark root (EDSR benchmark.tar)')
    _common(p, 'datasets/SR_benchmark')
    p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4])
    p.add_argument('--sets', nargs='+', choices=list(SR_SETS), default=None)

    p = sub.add_parser('gopro', help='GoPro: 512 training crops to LMDB, full-size test pairs')
    _common(p, 'datasets/GoPro')
    _crop(p, 512, 256)
    p.add_argument('--blur', choices=['blur', 'blur_gamma'], default='blur',
                   help='official layout only: which blurry folder is the input (default blur, as the benchmark)')
    p.add_argument('--splits', nargs='+', choices=['train', 'test'], default=['train', 'test'])

    p = sub.add_parser('hide', help='HIDE test pairs (names with dots renamed)')
    _common(p, 'datasets/HIDE')

    for variant in ('J', 'R'):
        p = sub.add_parser(f'realblur_{variant.lower()}', aliases=[f'realblur-{variant.lower()}'],
                           help=f'RealBlur-{variant} by the official train/test lists')
        _common(p, f'datasets/RealBlur_{variant}')
        p.add_argument('--lists', default=None, help='folder holding RealBlur_*_{train,test}_list.txt')
        p.add_argument('--splits', nargs='+', choices=['train', 'test'], default=['train', 'test'])
        p.set_defaults(variant=variant)

    p = sub.add_parser('reds', help='REDS: train_blur_jpeg/train_sharp LMDBs and REDS-val-300')
    _common(p, 'datasets/REDS')
    p.add_argument('--splits', nargs='+', choices=['train', 'val'], default=['train', 'val'])
    p.add_argument('--train-blur', default='train_blur_jpeg', help='blurry training folder (default train_blur_jpeg)')
    p.add_argument('--val-blur', default='val_blur_jpeg', help='blurry validation folder (default val_blur_jpeg)')

    p = sub.add_parser('sidd', help='SIDD: SIDD-Medium sRGB 512 crops and the validation .mat blocks')
    _common(p, 'datasets/SIDD')
    _crop(p, 512, 384)
    p.add_argument('--splits', nargs='+', choices=['train', 'val'], default=['train', 'val'])
    p.add_argument('--val-dir', default=None, help='folder with Validation{Noisy,Gt}BlocksSrgb.mat (default --src)')

    p = sub.add_parser('sample', help='offline sample set from scikit-image photographs, in a real layout')
    _common(p, src=False)
    p.add_argument('--task', required=True, choices=['sr', 'deblur', 'denoise'])
    p.add_argument('--like', default=None, help='layout: div2k (sr default), set5 ... manga109, gopro (deblur '
                                                'default), hide, realblur_j, realblur_r, reds, sidd (denoise)')
    p.add_argument('--crop', type=int, default=None)
    p.add_argument('--step', type=int, default=None)
    p.add_argument('--sigma', type=float, default=25.0, help='denoise: Gaussian noise sigma in grey levels')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--frames', type=int, default=2, help='deblur: blurred frames per photograph')

    p = sub.add_parser('verify', help='check LMDBs / a prepared dataset folder; exit 1 on any problem')
    p.add_argument('paths', nargs='+', help='X.lmdb paths (several = one paired set) or dataset folders')
    p.add_argument('--count', type=int, default=None, help='expected number of entries per LMDB')
    p.add_argument('--no-decode', action='store_true', help='check keys and counts only (fast)')
    return parser


def run(args):
    cmd = args.cmd
    if cmd == 'verify':
        from .verify import verify_paths
        checked, problems = verify_paths(args.paths, args.count, not args.no_decode)
        for item in checked:
            print(f'checked: {item}')
        for problem in problems:
            print(f'PROBLEM: {problem}')
        print(f'verify: {"FAILED, " + str(len(problems)) + " problem(s)" if problems else "OK"}')
        return 1 if problems else 0
    workers = check_workers(args.workers)
    ms = args.map_size
    if cmd == 'div2k':
        from .sr import prep_div2k
        prep_div2k(args.src, args.dst, args.scales, args.crop, args.step, splits=args.splits, workers=workers,
                   map_size=ms)
    elif cmd == 'srbench':
        from .sr import prep_srbench
        prep_srbench(args.src, args.dst, args.scales, workers, args.sets)
    elif cmd in ('set5', 'set14', 'b100', 'urban100', 'manga109'):
        from .sr import SR_SETS, prep_srbench_set
        name = next(n for n in SR_SETS if n.lower() == cmd)
        prep_srbench_set(args.src, args.dst, name, args.scales, workers)
    elif cmd == 'gopro':
        from .gopro import prep_gopro
        prep_gopro(args.src, args.dst, args.splits, args.blur, args.crop, args.step, workers, ms)
    elif cmd == 'hide':
        from .hide import prep_hide
        prep_hide(args.src, args.dst, workers, ms)
    elif cmd.startswith('realblur'):
        from .realblur import prep_realblur
        prep_realblur(args.src, args.dst, args.variant, args.splits, args.lists, workers, ms)
    elif cmd == 'reds':
        from .reds import prep_reds
        prep_reds(args.src, args.dst, args.splits, args.train_blur, args.val_blur, workers, ms)
    elif cmd == 'sidd':
        from .sidd import prep_sidd
        prep_sidd(args.src, args.dst, args.splits, args.val_dir, args.crop, args.step, workers, ms)
    elif cmd == 'sample':
        from .sample import make_sample
        make_sample(args.task, args.dst, args.like, args.crop, args.step, args.sigma, args.seed, args.frames, workers)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PrepError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
