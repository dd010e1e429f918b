"""``basicsr --help`` and ``basicsr <command> --help`` answer without torch; commands still register the plugin."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from ecma_basicsr.cli import SUBCOMMANDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = textwrap.dedent('''
    import os, sys, time
    start = time.perf_counter()
    import ecma_basicsr_launcher
    try:
        code = ecma_basicsr_launcher.main(sys.argv[1:])
    except SystemExit as exit_:
        code = exit_.code
    heavy = sorted(m for m in ('torch', 'torchvision', 'basicsr', 'mmengine', 'cv2') if m in sys.modules)
    print('RESULT', code, ','.join(heavy) or '-', 'ECMA_BASICSR_DEFER_REGISTRY' in os.environ,
          f'{time.perf_counter() - start:.3f}')
''')


def _probe(args):
    start = time.perf_counter()
    res = subprocess.run([sys.executable, '-c', PROBE, *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1'))
    line = [ln for ln in res.stdout.splitlines() if ln.startswith('RESULT')]
    assert line, res.stdout[-2000:] + res.stderr[-2000:]
    _, code, heavy, leaked, seconds = line[-1].split()
    return res, int(code or 0), heavy, leaked == 'True', float(seconds), time.perf_counter() - start


@pytest.mark.parametrize('command', [None, *SUBCOMMANDS])
def test_help_loads_no_heavy_module(command):
    res, code, heavy, leaked, seconds, _ = _probe([command, '--help'] if command else ['--help'])
    assert code == 0 and 'usage: basicsr' in res.stdout
    assert heavy == '-', f'--help of {command} imported {heavy}'
    assert not leaked, 'the deferral flag must not reach child processes'
    assert seconds < 1.0, f'{command} --help took {seconds:.2f} s'


def test_commands_through_the_launcher_register_the_plugin(tmp_path):
    res, code, heavy, leaked, _, _ = _probe(['restore', 'ECMA:width=8', '--input', str(tmp_path),
                                             '--output', str(tmp_path / 'o')])
    assert code == 1 and 'names no weights' in res.stderr, res.stderr[-2000:]
    assert 'torch' in heavy and not leaked
