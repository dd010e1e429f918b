"""The table of ``python -m datasets_prep`` subcommands: what each one reads, where it writes, how to call it.

One :class:`DatasetCommand` per subcommand, in :data:`COMMANDS`. It is the single description of
the commands: ``__main__`` builds its parser from it and dispatches through it;
``ecma_basicsr.engine.options_check`` reads it to name the command that builds a missing dataset
path (:func:`hint_for_path`); ``options/make_ecma_options.py`` writes the ``# Data:`` lines of the
option files from it (:meth:`DatasetCommand.usage`); a test checks that README's "Datasets" table
shows the same commands.

Dispatch rule: a subcommand's argparse destinations are the keyword arguments of its target
function (``--lists`` is stored as ``lists_dir`` because :func:`~datasets_prep.realblur.prep_realblur`
takes ``lists_dir``), plus the entry's ``fixed`` arguments. A test checks that every destination
is a parameter of the target, so a renamed parameter cannot be silently dropped.

This module imports nothing heavy (no cv2, torch or basicsr), so reading the table is cheap.
"""
from dataclasses import dataclass, field

PROG = 'python -m datasets_prep'


@dataclass(frozen=True)
class Arg:
    """One extra command-line argument: ``argparse.add_argument(*flags, **kwargs)``."""

    flags: tuple
    kwargs: dict = field(default_factory=dict)


def _crop(crop, step):
    return (Arg(('--crop',), dict(type=int, default=crop, help=f'sub-image size (default {crop})')),
            Arg(('--step',), dict(type=int, default=step, help=f'sub-image stride (default {step})')))


def _splits(*choices):
    return Arg(('--splits',), dict(nargs='+', choices=list(choices), default=list(choices),
                                   help=f"splits to prepare (default: {' '.join(choices)})"))


_SCALES = Arg(('--scales',), dict(type=int, nargs='+', default=[2, 3, 4], help='LR scales (default 2 3 4)'))


@dataclass(frozen=True)
class DatasetCommand:
    """One ``python -m datasets_prep`` subcommand.

    Args:
        name (str): Subcommand name.
        help (str): One line for ``-h``.
        target (str): ``'module:function'`` that does the work; called with the parsed arguments
            (see the module docstring). An ``int`` it returns is the exit status.
        src (str | None): What ``--src`` must hold, as shown in usage lines; None: no ``--src``.
        dst (str | None): Default ``--dst`` (None: ``--dst`` is required).
        args (tuple[Arg]): Further arguments.
        fixed (dict): Keyword arguments passed to ``target`` as they are (e.g. the SR set's name).
        sample (tuple | None): ``(task, like)`` of ``sample`` that writes a stand-in in this layout.
        also (str | None): Another subcommand that builds this dataset among others (``srbench``).
        aliases (tuple[str]): Other accepted names.
        common (bool): Whether ``--dst`` and ``--workers`` apply.
    """

    name: str
    help: str
    target: str
    src: str = None
    dst: str = None
    args: tuple = ()
    fixed: dict = field(default_factory=dict)
    sample: tuple = None
    also: str = None
    aliases: tuple = ()
    common: bool = True

    def usage(self, dst=None):
        """The command line that builds this dataset, e.g. ``python -m datasets_prep hide --src <...> --dst ...``."""
        parts = [PROG, self.name]
        if self.src:
            parts += ['--src', f'<{self.src}>']
        if dst or self.dst:
            parts += ['--dst', dst or self.dst]
        return ' '.join(parts)

    def sample_usage(self, dst=None):
        """The ``sample`` command line that writes an offline stand-in in this layout (None if there is none)."""
        if not self.sample:
            return None
        task, like = self.sample
        return f'{PROG} sample --task {task} --like {like} --dst {dst or self.dst}'

    def hint(self):
        """One line: how to build this dataset, with the all-at-once and offline-sample alternatives."""
        extra = []
        if self.also:
            extra.append(f'all sets at once: {COMMANDS[self.also].usage()}')
        if self.sample:
            extra.append(f'offline sample: {self.sample_usage()}')
        return self.usage() + (f" ({'; '.join(extra)})" if extra else '')


_SR_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')  # datasets_prep.sr.SR_SETS; a test keeps them equal

_TABLE = [
    DatasetCommand(
        'div2k', 'DIV2K: HR/LR sub-image LMDBs (train) and LR folders (valid)', 'datasets_prep.sr:prep_div2k',
        src='folder with DIV2K_train_HR/, DIV2K_valid_HR/', dst='datasets/DIV2K',
        args=(*_crop(480, 240), _SCALES, _splits('train', 'valid')), sample=('sr', 'div2k')),
    *[DatasetCommand(
        name.lower(), f'{name}: HR, GTmod<s> and LR_bicubic/X<s> folders', 'datasets_prep.sr:prep_srbench_set',
        src=f'{name}: HR/ or the images', dst=f'datasets/SR_benchmark/{name}', args=(_SCALES,),
        fixed={'name': name}, sample=('sr', name.lower()), also='srbench') for name in _SR_SETS],
    DatasetCommand(
        'srbench', 'every SR test set found under a benchmark root (EDSR benchmark.tar)',
        'datasets_prep.sr:prep_srbench',
        src='benchmark root with Set5/, Set14/, B100/, ...', dst='datasets/SR_benchmark',
        args=(_SCALES, Arg(('--sets',), dict(nargs='+', choices=list(_SR_SETS), default=None,
                                              help='only these sets (default: every set found)'))),),
    DatasetCommand(
        'gopro', 'GoPro: 512 training crops to LMDB, full-size test pairs', 'datasets_prep.gopro:prep_gopro',
        src='unpacked GOPRO_Large.zip, or the train/ + test/ repack', dst='datasets/GoPro',
        args=(*_crop(512, 256), _splits('train', 'test'),
              Arg(('--blur',), dict(choices=['blur', 'blur_gamma'], default='blur',
                                    help='official layout only: which blurry folder is the input '
                                         '(default blur, as the benchmark)'))),
        sample=('deblur', 'gopro')),
    DatasetCommand(
        'hide', 'HIDE test pairs (names with dots renamed)', 'datasets_prep.hide:prep_hide',
        src='unpacked HIDE_dataset.zip', dst='datasets/HIDE', sample=('deblur', 'hide')),
    *[DatasetCommand(
        f'realblur_{v.lower()}', f'RealBlur-{v} by the official train/test lists',
        'datasets_prep.realblur:prep_realblur',
        src='unpacked RealBlur.tar.gz with the list files', dst=f'datasets/RealBlur_{v}',
        args=(_splits('train', 'test'),
              Arg(('--lists',), dict(dest='lists_dir', default=None,
                                     help='folder holding RealBlur_*_{train,test}_list.txt'))),
        fixed={'variant': v}, sample=('deblur', f'realblur_{v.lower()}'), aliases=(f'realblur-{v.lower()}',))
      for v in ('J', 'R')],
    DatasetCommand(
        'reds', 'REDS: train_blur_jpeg/train_sharp LMDBs and REDS-val-300', 'datasets_prep.reds:prep_reds',
        src='folder with train/train_blur_jpeg/, train/train_sharp/, val/', dst='datasets/REDS',
        args=(_splits('train', 'val'),
              Arg(('--train-blur',), dict(default='train_blur_jpeg',
                                          help='blurry training folder (default train_blur_jpeg)')),
              Arg(('--val-blur',), dict(default='val_blur_jpeg',
                                        help='blurry validation folder (default val_blur_jpeg)'))),
        sample=('deblur', 'reds')),
    DatasetCommand(
        'sidd', 'SIDD: SIDD-Medium sRGB 512 crops and the validation .mat blocks', 'datasets_prep.sidd:prep_sidd',
        src='folder with SIDD_Medium_Srgb/ and Validation*BlocksSrgb.mat', dst='datasets/SIDD',
        args=(*_crop(512, 384), _splits('train', 'val'),
              Arg(('--val-dir',), dict(default=None,
                                       help='folder with Validation{Noisy,Gt}BlocksSrgb.mat (default --src)'))),
        sample=('denoise', 'sidd')),
    DatasetCommand(
        'sample', 'offline sample set from scikit-image photographs, in a real layout',
        'datasets_prep.sample:make_sample',
        args=(Arg(('--task',), dict(required=True, choices=['sr', 'deblur', 'denoise'])),
              Arg(('--like',), dict(default=None, help='layout: div2k (sr default), set5 ... manga109, gopro (deblur '
                                                       'default), hide, realblur_j, realblur_r, reds, sidd (denoise)')),
              Arg(('--crop',), dict(type=int, default=None, help='LMDB sub-image size (default per layout)')),
              Arg(('--step',), dict(type=int, default=None, help='LMDB sub-image stride (default per layout)')),
              Arg(('--sigma',), dict(type=float, default=25.0, help='denoise: Gaussian noise sigma in grey levels')),
              Arg(('--seed',), dict(type=int, default=0)),
              Arg(('--frames',), dict(type=int, default=2, help='deblur: blurred frames per photograph')))),
    DatasetCommand(
        'verify', 'check LMDBs / a prepared dataset folder; exit 1 on any problem', 'datasets_prep.verify:run_verify',
        common=False,
        args=(Arg(('paths',), dict(nargs='+', help='X.lmdb paths (several = one paired set) or dataset folders')),
              Arg(('--count',), dict(type=int, default=None, help='expected number of entries per LMDB')),
              Arg(('--no-decode',), dict(action='store_true', help='check keys and counts only (fast)')))),
]

COMMANDS = {c.name: c for c in _TABLE}
"""name -> :class:`DatasetCommand`, in the order ``-h`` lists them."""


def find_command(name):
    """The command called ``name`` (or one of its aliases), or None."""
    for command in COMMANDS.values():
        if name == command.name or name in command.aliases:
            return command
    return None


def command_for_path(path):
    """The dataset command whose default output holds ``path``, or None.

    Matching is on path components, case-insensitively, and the longest default ``--dst`` wins,
    so ``datasets/SR_benchmark/Set5/HR`` is ``set5`` (not ``srbench``) and a path under another
    root (``/data/datasets/GoPro/test``) still finds ``gopro``.
    """
    parts = '/' + str(path).replace('\\', '/').strip('/').lower() + '/'
    best = None
    for command in COMMANDS.values():
        if not command.dst or not command.src:
            continue
        key = command.dst.lower().strip('/')
        key = key[len('datasets/'):] if key.startswith('datasets/') else key
        if f'/{key}/' in parts and (best is None or len(key) > len(best[0])):
            best = (key, command)
    return best[1] if best else None


def hint_for_path(path):
    """How to build the data at ``path`` (one line), or None when no dataset command writes it."""
    command = command_for_path(path)
    return command.hint() if command else None
