"""Importing the plugin changes nothing in BasicSR; the engine installs and uninstalls; plain ``import basicsr``.

* In fresh interpreters, importing ``ecma_basicsr``, ``ecma_basicsr.archs.ecma_arch`` and ``datasets_prep``
  leaves every attribute of every loaded ``basicsr`` module and class identical (``is``) to BasicSR's.
* :func:`ecma_basicsr.engine.install` replaces exactly the recorded attributes, twice is once, and
  :func:`~ecma_basicsr.engine.uninstall` puts the originals back.
* The start-up hook (``ecma_basicsr-import-hook.pth``, written by ``setup.py``) makes a plain
  ``import basicsr`` work without importing torch at start-up or the plugin at all.
* Errors users fix are one ``UserError`` family, printed by the ``basicsr`` command as one line.
"""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NAMED = ('basicsr.models.base_model:BaseModel.save_network', 'basicsr.train:load_resume_state',
         'basicsr.utils.dist_util:init_dist', 'basicsr.utils.registry:Registry.get')

# Shared by the subprocesses: identity snapshot of all basicsr module and class attributes.
SNAPSHOT = textwrap.dedent('''
    import importlib, sys

    def snapshot():
        seen = {}
        for name, module in list(sys.modules.items()):
            if name != 'basicsr' and not name.startswith('basicsr.'):
                continue
            for attr, value in list(vars(module).items()):
                seen[(name, attr)] = value
                if isinstance(value, type) and (value.__module__ or '').startswith('basicsr'):
                    for cattr, cvalue in list(vars(value).items()):
                        seen[(name, attr, cattr)] = cvalue
        return seen

    def named(spec):
        module, _, path = spec.partition(':')
        obj = importlib.import_module(module)
        for part in path.split('.'):
            obj = getattr(obj, part)
        return obj
''')


def _python(code, env=None, timeout=300):
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    full_env.update(env or {})
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=timeout, env=full_env,
                         cwd=REPO)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def _load_hook_alone():
    """Code that installs the alias finder the way the .pth does (this file alone, not the package)."""
    path = osp.join(REPO, 'ecma_basicsr', 'import_hook.py')
    return (f'import importlib.util as _u\n_s = _u.spec_from_file_location("hook", {path!r})\n'
            f'hook = _u.module_from_spec(_s)\n_s.loader.exec_module(hook)\nhook.install_finder()\n')


def test_importing_the_plugin_leaves_basicsr_unchanged():
    """BasicSR first (through the hook only), then the plugin: nothing BasicSR defines was replaced."""
    out = _python(SNAPSHOT + _load_hook_alone() + textwrap.dedent(f'''
        import basicsr, basicsr.train, basicsr.test, basicsr.utils.options
        assert 'ecma_basicsr' not in sys.modules
        before = snapshot()
        originals = {{spec: named(spec) for spec in {NAMED!r}}}
        finders = list(sys.meta_path)
        import ecma_basicsr, ecma_basicsr.archs.ecma_arch, datasets_prep, datasets_prep.bicubic
        after = snapshot()
        missing = object()
        changed = sorted(str(k) for k, v in before.items() if after.get(k, missing) is not v)
        assert not changed, changed
        for spec, original in originals.items():
            assert named(spec) is original, spec
        assert sys.meta_path == finders, 'the package import installs no second alias finder'
        assert 'ecma_basicsr.engine.patches' not in sys.modules, 'only basicsr train/test load the patches'
        from basicsr.utils.registry import ARCH_REGISTRY
        assert 'ECMA' in ARCH_REGISTRY and 'ECMASR' in ARCH_REGISTRY  # the registries are filled
        print(len(before))
    '''))
    assert int(out.split()[-1]) > 1000, 'the snapshot should cover all of basicsr'


def test_plugin_first_then_basicsr_functions_are_basicsr_s():
    """The plugin imported first: every named attribute (and nothing in any basicsr namespace) is ours."""
    _python(SNAPSHOT + textwrap.dedent(f'''
        import inspect, os
        import ecma_basicsr, ecma_basicsr.archs.ecma_arch, datasets_prep
        import basicsr, basicsr.train, basicsr.test
        root = os.path.dirname(basicsr.__file__)
        for spec in {NAMED!r}:
            func = named(spec)
            for f in (func, inspect.unwrap(func)):
                assert f.__code__.co_filename.startswith(root), (spec, f.__code__.co_filename)
        ours = sorted(str(k) for k, v in snapshot().items()
                      if (getattr(v, '__module__', None) or '').startswith('ecma_basicsr'))
        assert not ours, ours
    '''))


def _namespace_snapshot():
    import importlib

    import basicsr.test
    import basicsr.train
    import basicsr.utils.misc
    import basicsr.utils.options
    from basicsr.utils.file_client import FileClient, LmdbBackend
    from basicsr.utils.registry import Registry

    from ecma_basicsr.engine.data_checks import IMFROMBYTES_MODULES
    modules = [basicsr.train, basicsr.test, basicsr.utils.options, basicsr.utils.misc] + [importlib.import_module(m)
                                                                       for m in IMFROMBYTES_MODULES]
    return {(m.__name__, k): v for m in modules for k, v in vars(m).items()} | {
        (cls.__name__, k): v for cls in (Registry, FileClient, LmdbBackend) for k, v in vars(cls).items()}


def test_engine_installs_recorded_patches_and_uninstalls_them():
    from ecma_basicsr import engine
    from ecma_basicsr.engine.data_checks import IMFROMBYTES_MODULES
    from ecma_basicsr.engine.patches import PATCHES

    assert not engine.is_installed(), 'nothing may be installed outside the CLI and the engine fixture'
    before = _namespace_snapshot()
    applied = engine.install()
    try:
        assert applied == list(PATCHES) and engine.is_installed()
        during = _namespace_snapshot()
        changed = {k for k in before if during[k] is not before[k]}
        assert changed == {('basicsr.utils.options', 'init_dist'), ('basicsr.train', 'load_resume_state'),
                           ('basicsr.train', 'create_train_val_dataloader'), ('basicsr.train', 'CPUPrefetcher'),
                           ('basicsr.train', 'CUDAPrefetcher'), ('basicsr.train', 'build_model'),
                           ('basicsr.test', 'build_model'), ('Registry', 'get'), ('LmdbBackend', '__init__'),
                           ('FileClient', 'get'), ('basicsr.utils.misc', 'mkdir_and_rename'),
                           ('basicsr.train', 'mkdir_and_rename'), ('basicsr.utils.options', 'ordered_yaml'),
                           ('basicsr.utils.options', '_postprocess_yml_value')} | {
                               (m, 'imfrombytes') for m in IMFROMBYTES_MODULES}
        for patch in PATCHES:  # each records what it replaced
            assert patch.original is before[(patch.owner().__name__, patch.name)]
        assert engine.install() == [] and _namespace_snapshot() == during, 'installing twice is installing once'
        assert PATCHES[0].apply() is False
        with engine.installed():  # nested: the outer installation stays
            pass
        assert engine.is_installed()
    finally:
        undone = engine.uninstall()
    assert undone == list(reversed(PATCHES)) and engine.uninstall() == []
    after = _namespace_snapshot()
    assert all(after[k] is v for k, v in before.items()), 'uninstall restores every original'
    with engine.installed():
        assert engine.is_installed()
    assert not engine.is_installed()


def test_undo_refuses_to_drop_a_later_patch():
    import basicsr.train

    from ecma_basicsr.engine.patches import PATCHES
    patch = next(p for p in PATCHES if p.name == 'load_resume_state')
    original = basicsr.train.load_resume_state
    assert patch.apply()
    later = basicsr.train.load_resume_state = lambda opt: None
    try:
        with pytest.raises(RuntimeError, match='basicsr.train.load_resume_state was replaced again'):
            patch.undo()
    finally:
        basicsr.train.load_resume_state = patch.replacement
        patch.undo()
    assert basicsr.train.load_resume_state is original and later is not original


def _hook_site(tmp_path):
    """A site folder holding the start-up .pth exactly as ``setup.py build_py`` writes it."""
    build = tmp_path / 'build'
    res = subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '-d', str(build)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    from ecma_basicsr.import_hook import PTH_LINE, PTH_NAME
    pth = build / PTH_NAME
    assert pth.read_text() == PTH_LINE + '\n', 'setup.py writes import_hook.PTH_LINE'
    site_dir = tmp_path / 'site'
    site_dir.mkdir()
    (site_dir / PTH_NAME).write_text(pth.read_text())
    return site_dir


# Remove a hook the environment itself may already have (an installed checkout), then process our site folder.
_FRESH_SITE = textwrap.dedent('''
    import site, sys, time
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, 'ecma_basicsr_functional_tensor_alias', False)]
    start = time.perf_counter()
    site.addsitedir(sys.argv[1])
    startup_ms = (time.perf_counter() - start) * 1000
''')


def test_startup_hook_makes_plain_import_basicsr_work(tmp_path):
    site_dir = _hook_site(tmp_path)
    code = _FRESH_SITE + textwrap.dedent('''
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'basicsr', 'ecma_basicsr'))
        assert not heavy, f'the start-up hook imported {heavy}'
        import basicsr  # a user's script: no ecma_basicsr import
        assert 'ecma_basicsr' not in sys.modules
        from torchvision.transforms import functional
        from torchvision.transforms.functional_tensor import rgb_to_grayscale
        assert rgb_to_grayscale is functional.rgb_to_grayscale
        import collections, torch
        assert collections.Counter in torch.serialization.get_safe_globals(), 'BasicSR training states load'
        print(f'{startup_ms:.2f}')
    ''')
    res = subprocess.run([sys.executable, '-c', code, str(site_dir)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1'), cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    print(f'start-up hook: {float(res.stdout.split()[-1]):.2f} ms in site.addsitedir')


def test_startup_hook_without_the_package_does_nothing(tmp_path):
    site_dir = _hook_site(tmp_path)
    code = _FRESH_SITE + 'assert not any(getattr(f, "ecma_basicsr_functional_tensor_alias", False) ' \
                         'for f in sys.meta_path)\n'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    # -S: no site-packages, so no ecma_basicsr anywhere (an installed checkout included)
    res = subprocess.run([sys.executable, '-S', '-c', code, str(site_dir)], capture_output=True, text=True,
                         timeout=120, env=env, cwd=str(tmp_path))
    assert res.returncode == 0 and not res.stderr, res.stderr[-2000:]


def test_datasets_prep_says_how_to_fix_a_basicsr_that_cannot_import():
    """Without the hook basicsr 1.4.2 cannot import under torchvision >= 0.17: one clear error."""
    out = _python(textwrap.dedent('''
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, 'ecma_basicsr_functional_tensor_alias', False)]
        import importlib.util
        if importlib.util.find_spec('torchvision.transforms.functional_tensor') is not None:
            print('SKIP'); raise SystemExit
        from datasets_prep.bicubic import load_basicsr
        from datasets_prep.common import PrepError
        try:
            load_basicsr()
        except PrepError as err:
            print(err)
        assert 'ecma_basicsr' not in sys.modules
    '''))
    if out.strip() == 'SKIP':
        pytest.skip('this torchvision still ships functional_tensor')
    assert 'The SR commands need basicsr' in out and 'functional_tensor' in out and 'pip install -e .' in out


def test_user_errors_are_one_family_and_one_line(monkeypatch, capsys):
    from ecma_basicsr import cli
    from ecma_basicsr.bench import BenchError
    from ecma_basicsr.engine.checkpoint import CheckpointError, UnsafeCheckpointError
    from ecma_basicsr.engine.options_check import OptionError
    from ecma_basicsr.errors import UserError
    from ecma_basicsr.restore import RestoreError
    for cls in (OptionError, CheckpointError, UnsafeCheckpointError, BenchError, RestoreError):
        assert issubclass(cls, UserError), cls
    assert not issubclass(RestoreError, BenchError)

    def boom(argv):
        raise RestoreError('--input folder x holds no images.')

    monkeypatch.setattr(cli, '_resolve', lambda target: boom)
    assert cli.main(['restore', 'x']) == 1
    assert capsys.readouterr().err == 'basicsr restore: error: --input folder x holds no images.\n'
    monkeypatch.setattr(cli, '_resolve', lambda target: lambda argv: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli.main(['restore', 'x'])


def test_restore_raises_its_own_user_error(tmp_path, capsys):
    from ecma_basicsr import cli
    from ecma_basicsr.restore import RestoreError, list_inputs
    with pytest.raises(RestoreError, match='neither an image file nor a folder'):
        list_inputs(str(tmp_path / 'nope'))
    assert cli.main(['restore', 'ECMASR:upscale=2', '--input', str(tmp_path), '--output', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('basicsr restore: error: ') and 'names no weights' in err and err.count('\n') == 1


@pytest.mark.skipif(os.environ.get('ECMA_SLOW_TESTS') != '1', reason='installs the project into a temporary venv '
                    '(about a minute); set ECMA_SLOW_TESTS=1 to run it')
@pytest.mark.parametrize('mode', ['editable', 'regular'])
def test_pip_install_puts_the_startup_hook_in_site_packages(tmp_path, mode):
    """``pip install -e .`` / ``pip install .`` (no dependencies) into a venv that sees this interpreter's packages."""
    import sysconfig
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}  # only what the venv has installed

    def run(*args, timeout=900):
        res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=str(tmp_path))
        assert res.returncode == 0, res.stderr[-3000:]
        return res.stdout

    venv = tmp_path / 'venv'
    run(sys.executable, '-m', 'venv', str(venv))
    py = str(venv / 'bin' / 'python')
    # as the Makefile does; the pip bundled with older Pythons would run the legacy `setup.py develop`
    run(py, '-m', 'pip', 'install', '-q', '--upgrade', 'pip', 'setuptools', 'wheel')
    site_dir = run(py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').strip()
    # torch, torchvision and basicsr from this interpreter, as a plain path (its own .pth files stay unprocessed)
    with open(osp.join(site_dir, 'zz-dependencies.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    run(py, '-m', 'pip', 'install', '-q', '--no-deps', *(['-e', REPO] if mode == 'editable' else [REPO]))
    from ecma_basicsr.import_hook import PTH_NAME
    assert osp.isfile(osp.join(site_dir, PTH_NAME))
    out = run(py, '-c', "import sys; assert 'torch' not in sys.modules; import basicsr; "
                        "assert 'ecma_basicsr' not in sys.modules; import ecma_basicsr; print(ecma_basicsr.__file__)")
    assert out.strip().startswith(REPO if mode == 'editable' else site_dir)
    run(py, '-m', 'pip', 'uninstall', '-y', '-q', 'ecma_basicsr')
    assert not osp.exists(osp.join(site_dir, PTH_NAME)), 'pip uninstall removes the hook'
