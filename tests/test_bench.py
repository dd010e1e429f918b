"""``basicsr bench``: outputs and their columns, MAC counting (incl. the FFT op handles), protocols, errors."""
import csv
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import shared_path

from ecma_basicsr.analysis.flops import analyze_macs
from ecma_basicsr.archs.fft_conv import LargeKernelConv, fft_conv_macs, fft_plane, transform_macs
from ecma_basicsr.bench import BenchError
from ecma_basicsr.bench.networks import expand_specs, parse_spec
from ecma_basicsr.bench.report import csv_columns, default_plot_size, make_plots
from ecma_basicsr.bench.testsets import parse_testset, reference_scores

TINY_ECMA = 'tiny=ECMA:width=8,enc_blocks=[1,1],kernels=[8,4]'
TINY_SR = 'tinysr=IMDN:nf=16,num_modules=1,upscale=2'


@pytest.fixture(scope='module')
def bench_run(tmp_path_factory):
    """One real run of the command (two tiny networks, two sizes): the outputs the tests read."""
    from ecma_basicsr.cli import main
    out = tmp_path_factory.mktemp('bench')
    code = main(['bench', '--nets', TINY_ECMA, TINY_SR, '--sizes', '32x32', '64x48', '--repeats', '2',
                 '--threads', '1', '--gemm-n', '256', '--out', str(out)])
    assert code == 0
    return out


def read_csv(path):
    with open(path) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_csv_has_the_documented_columns(bench_run):
    header, rows = read_csv(bench_run / 'results.csv')
    assert header == csv_columns(['32x32', '64x48'], [])
    assert [r['label'] for r in rows] == ['tiny', 'tinysr']
    for r in rows:
        assert r['status'] == 'ok'
        for s in ('32x32', '64x48'):
            assert r[f'status@{s}'] == 'ok', r[f'status@{s}']
            assert float(r[f'gmacs_fft@{s}']) >= float(r[f'gmacs@{s}']) > 0
            assert float(r[f'lat_median_ms@{s}']) > 0 and int(r[f'runs@{s}']) == 2
            assert 0 < float(r[f'gemm_frac@{s}']) < 20
            assert float(r[f'peak_mem_mb@{s}']) >= 0
    tiny, tinysr = rows
    assert float(tiny['fft_gmacs@32x32']) > 0  # the tiny ECMA's large kernels are counted through the FFT handles
    assert float(tinysr['fft_gmacs@32x32']) == 0
    # SR networks are measured at the output size: x2 gets half the size as input
    assert tinysr['input@64x48'] == '24x32' and tiny['input@64x48'] == '48x64'
    assert int(tiny['params']) == sum(p.numel() for p in parse_and_build(TINY_ECMA).parameters())


def parse_and_build(text):
    from ecma_basicsr.bench.networks import build
    return build(parse_spec(text))


def test_markdown_plots_and_provenance(bench_run):
    md = (bench_run / 'results.md').read_text()
    assert '| network | params (M) | GMACs 32x32 (+FFT) |' in md and '| tiny |' in md
    prov = json.loads((bench_run / 'provenance.json').read_text())
    for key in ('git_revision', 'torch', 'device_name', 'threads', 'date', 'gemm_gmac_per_s_start', 'command'):
        assert prov[key] not in (None, ''), key
    assert prov['threads'] == 1 and prov['gemm_gmac_per_s_start'] > 0
    png = bench_run / 'latency_vs_macs.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_rerender_rebuilds_the_tables_from_raw_json(bench_run, tmp_path):
    import shutil

    from ecma_basicsr.bench.report import rerender
    copy = tmp_path / 'copy'
    shutil.copytree(bench_run, copy)
    (copy / 'results.csv').unlink()
    (copy / 'results.md').unlink()
    rerender(str(copy))
    assert (copy / 'results.csv').read_text() == (bench_run / 'results.csv').read_text()
    assert (copy / 'results.md').read_text() == (bench_run / 'results.md').read_text()


def test_report_cli_rerenders_and_names_a_folder_that_is_not_a_run(bench_run, tmp_path, capsys):
    import shutil

    from ecma_basicsr.bench.report import main
    copy = tmp_path / 'copy'
    shutil.copytree(bench_run, copy)
    (copy / 'results.md').unlink()
    main([str(copy)])
    assert str(copy / 'results.md') in capsys.readouterr().out
    assert (copy / 'results.md').read_text() == (bench_run / 'results.md').read_text()
    with pytest.raises(SystemExit):
        main([str(tmp_path / 'nowhere')])
    assert 'raw.json not found' in capsys.readouterr().err


def test_macs_scale_by_four_for_a_pure_convolution_network():
    from basicsr.archs.edsr_arch import EDSR
    net = EDSR(3, 3, num_feat=8, num_block=2, upscale=2)
    small = analyze_macs(net, (1, 3, 12, 20))
    large = analyze_macs(net, (1, 3, 24, 40))
    assert small.macs > 0 and small.fft == 0
    assert large.macs == 4 * small.macs


@pytest.mark.parametrize('group_in, bias, hw', [(1, True, (20, 21)), (2, False, (9, 30))])
def test_fft_handles_count_the_formula_on_one_layer(group_in, bias, hw):
    conv = LargeKernelConv(4 * group_in, 4, 8, mode='fft', bias=bias)
    count = analyze_macs(conv, (2, 4 * group_in) + hw)
    n1, n2 = fft_plane(*hw, 8)
    n = n1 * n2
    # forward transforms of every input plane, spectral product, inverse transforms of every output plane;
    # the kernel's own spectrum depends on the weights only (cached at inference) and is not counted
    by_hand = 2 * (4 * group_in * n * math.log2(n) + 4 * 4 * group_in * n1 * (n2 // 2 + 1) + 4 * n * math.log2(n))
    assert count.fft == pytest.approx(by_hand, rel=1e-12)
    assert count.fft == pytest.approx(fft_conv_macs(4, group_in, *hw, 8, batch=2), rel=1e-12)
    assert count.macs == 0
    # the spatial path of the same layer is an ordinary convolution for mmengine
    spatial = analyze_macs(conv, (2, 4 * group_in) + hw, large_kernel_mode='spatial')
    assert spatial.fft == 0 and spatial.macs == 2 * 4 * group_in * 64 * hw[0] * hw[1]


def test_complex_fft_handles_count_two_n_log_n():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.ifft2(torch.fft.fft2(x.to(torch.complex64))).real

    count = analyze_macs(Spectral(), (1, 3, 16, 8))
    assert count.fft == pytest.approx(2 * 3 * transform_macs(128, real=False))
    assert transform_macs(128, real=False) == 2 * 128 * 7


def test_bicubic_set5_x4_through_the_harness_matches_basicsr_metrics(tmp_path):
    import cv2
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils.matlab_functions import imresize

    from ecma_basicsr.bench.report import write_csv
    from ecma_basicsr.bench.runner import reference_rows
    root = shared_path('data', 'Set5')
    ts = parse_testset(f'Set5=sr:{root}')
    rows = reference_rows([ts], {4}, log=lambda m: None)
    psnrs, ssims = [], []
    for hr_path in sorted(glob_png(osp.join(root, 'HR'))):
        stem = osp.splitext(osp.basename(hr_path))[0]
        lr = cv2.imread(osp.join(root, 'LR_bicubic', 'X4', f'{stem}x4.png'))
        hr = cv2.imread(hr_path)[:lr.shape[0] * 4, :lr.shape[1] * 4]
        sr = (np.clip(imresize(lr / 255.0, 4), 0, 1) * 255).round().astype(np.uint8)
        psnrs.append(calculate_psnr(sr, hr, crop_border=4, test_y_channel=True))
        ssims.append(calculate_ssim(sr, hr, crop_border=4, test_y_channel=True))
    got = rows[0].evals['Set5']
    assert rows[0].label == 'bicubic x4' and got['images'] == 5
    assert got['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-9)
    assert got['ssim'] == pytest.approx(np.mean(ssims), abs=1e-9)
    assert abs(got['psnr'] - 28.42) < 0.05  # the published bicubic Set5 x4 figure
    write_csv(tmp_path / 'r.csv', rows, [], ['Set5'])
    _, csv_rows = read_csv(tmp_path / 'r.csv')
    assert float(csv_rows[0]['psnr@Set5']) == pytest.approx(got['psnr'], abs=1e-4)
    plots = make_plots(str(tmp_path), rows, ['256x256'], ['Set5'], set_tasks={'Set5': 'sr'})
    assert osp.basename(plots[0]) == 'psnr_vs_macs_Set5.png' and osp.getsize(plots[0]) > 0


def test_psnr_plots_use_the_papers_sizes_by_default():
    sizes = ['256x256', '1280x720']
    assert default_plot_size(sizes, 'sr') == '1280x720' and default_plot_size(sizes, 'deblur') == '256x256'
    assert default_plot_size(['64x64', '128x128'], 'sr') == '128x128'


def glob_png(folder):
    import glob
    return glob.glob(osp.join(folder, '*.png'))


def test_awgn_identity_floor_is_the_noise_psnr(tmp_path):
    import cv2
    cv2.imwrite(str(tmp_path / 'flat.png'), np.full((96, 80, 3), 128, np.uint8))
    ts = parse_testset(f'flat=awgn25:{tmp_path}')
    psnr, ssim, n = reference_scores(ts)
    assert n == 1 and psnr == pytest.approx(20 * math.log10(255 / 25), abs=0.1)  # seeded sigma 25 noise
    assert reference_scores(ts) == (psnr, ssim, n)  # same seed, same noise


def test_paired_layout_and_identity_floor(tmp_path):
    import cv2
    for sub in ('input', 'target'):
        (tmp_path / sub).mkdir()
    clean = np.random.RandomState(0).randint(0, 256, (40, 56, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'target' / 'a.png'), clean)
    cv2.imwrite(str(tmp_path / 'input' / 'a.png'), clean)
    psnr, ssim, n = reference_scores(parse_testset(f'pairs=deblur:{tmp_path}'))
    assert n == 1 and psnr == float('inf') and ssim == pytest.approx(1.0)
    with pytest.raises(BenchError, match='needs an input folder'):
        parse_testset(f'pairs=deblur:{tmp_path / "input"}')


def test_spec_grammar(tmp_path):
    spec = parse_spec('mine=ECMA:variant=T,enc_blocks=[1,1,2,9],large_kernel_mode=spatial@w.pth')
    assert (spec.label, spec.arch, spec.checkpoint, spec.scale, spec.task) == ('mine', 'ECMA', 'w.pth', 1, 'restore')
    assert spec.kwargs == dict(variant='T', enc_blocks=[1, 1, 2, 9], large_kernel_mode='spatial')
    assert parse_spec('swinir-light-x4').arch == 'SwinIR' and parse_spec('SwinIR-light-x4').scale == 4
    opt = tmp_path / 'o.yml'
    opt.write_text('name: from_yml\nscale: 3\nnetwork_g:\n  type: IMDN\n  upscale: 3\n  nf: 8\n')
    spec = parse_spec(str(opt))
    assert (spec.label, spec.arch, spec.scale, spec.kwargs) == ('from_yml', 'IMDN', 3, dict(upscale=3, nf=8))
    opt.write_text(opt.read_text() + 'path:\n  pretrain_network_g: experiments/untrained/net_g_latest.pth\n')
    with pytest.raises(BenchError, match=r'not found: .*untrained.*o\.yml@none'):
        expand_specs([str(opt)])
    assert expand_specs([f'{opt}@none'])[0].checkpoint is None


def test_unknown_network_and_missing_checkpoint_fail_clearly(tmp_path, capsys):
    from ecma_basicsr.cli import main
    with pytest.raises(BenchError, match=r"unknown network 'ECMAX'.*ECMA-T.*registered: .*NAFNet"):
        expand_specs(['ECMAX'])
    missing = tmp_path / 'nope.pth'
    with pytest.raises(BenchError, match=r"checkpoint for 'ECMA-T' not found: .*nope.pth.*--weights ECMA-T=PATH"):
        expand_specs(['ECMA-T'], [f'ECMA-T={missing}'])
    with pytest.raises(BenchError, match="not a network of this run"):
        expand_specs(['ECMA-T'], [f'ECMA-S={missing}'])
    assert main(['bench', '--nets', f'ECMA-T@{missing}', '--out', str(tmp_path / 'o')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('basicsr bench: error: checkpoint for') and 'nope.pth' in err
    assert not (tmp_path / 'o').exists()  # nothing measured, nothing written


def test_checkpoint_that_does_not_fit_fails_before_the_run(tmp_path):
    from ecma_basicsr.bench.networks import validate
    net = parse_and_build('IMDN:nf=16,num_modules=1,upscale=3')
    path = tmp_path / 'x3.pth'
    torch.save({'params': net.state_dict()}, path)
    spec = expand_specs([f'IMDN:nf=16,num_modules=1,upscale=2@{path}'])[0]
    with pytest.raises(BenchError, match='upscale'):
        validate(spec)


def test_a_size_predicted_over_budget_is_reported_not_run():
    from ecma_basicsr.bench.worker import run_size
    spec = parse_spec(TINY_ECMA)
    job = dict(device='cpu', budget=1.0, warmup=1, repeats=2)
    state = dict(baseline_mem=0, prev=dict(forward_s=0.5, pixels=32 * 32, macs=1e6, fft=1e4))
    out = run_size(None, None, spec, dict(h=64, w=64), job, state)  # 4x the pixels of a 0.5 s forward > 1 s
    assert out['status'].startswith('over budget: est. 2 s per forward')
    assert out['macs_estimated'] and out['macs'] == pytest.approx(4e6)


def test_compile_times_every_network_compiled_as_built(tmp_path):
    """``--compile``: the timed module is torch.compile of the network as built (ECMA's 'auto' large kernels
    pinned for the size), equal to it within 1e-5 (relative to the output's scale); the compiling first
    forward is reported, not timed."""
    from ecma_basicsr.bench.measure import compile_for_inference
    from ecma_basicsr.cli import main
    torch.manual_seed(0)
    net = parse_and_build(TINY_ECMA).eval()
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised gammas would hide the blocks
            p.normal_(0, 0.3)
    x = torch.rand(1, 3, 20, 28)
    model, seconds = compile_for_inference(net, x)
    assert seconds > 0
    with torch.inference_mode():
        got, ref = model(x), net(x)
    assert (got - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    out = tmp_path / 'run'
    assert main(['bench', '--nets', TINY_ECMA, '--sizes', '20x28', '--repeats', '1', '--threads', '1', '--compile',
                 'both', '--no-macs', '--gemm-n', '256', '--out', str(out)]) == 0
    _, (eager, compiled) = read_csv(out / 'results.csv')
    assert (eager['label'], compiled['label']) == ('tiny', 'tiny (compiled)')
    for row in (eager, compiled):
        assert row['status@20x28'] == 'ok' and float(row['lat_median_ms@20x28']) > 0
    assert eager['compile_s@20x28'] == ''
    assert float(compiled['compile_s@20x28']) > float(compiled['lat_median_ms@20x28']) / 1e3  # not timed
    md = (out / 'results.md').read_text()
    assert '- modes: eager (ECMA in its fused' in md and 'and compiled (rows marked' in md
    assert 'first forward, compiling (not in the latency): tiny (compiled) at 20x28' in md


def test_mac_count_is_the_architectures_not_the_fused_copys():
    """The fused inference copy folds the fusion's 1x1 conv into the upsampling (fewer MACs at full
    resolution); MACs are counted on the network as built, which is what the papers count."""
    from mmengine.analysis import FlopAnalyzer
    from mmengine.analysis.jit_handles import addmm_flop_jit

    from ecma_basicsr.analysis.flops import conv_mode_handle
    from ecma_basicsr.archs import fuse_for_inference
    from ecma_basicsr.archs.ecma_arch import ECMA
    net = ECMA(width=8, enc_blocks=(1, 1), kernels=(8, 4), large_kernel_mode='spatial').eval()
    x = torch.rand(1, 3, 32, 32)
    built = FlopAnalyzer(net, (x, )).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert analyze_macs(net, x, large_kernel_mode='spatial').macs == built.total()
    with torch.no_grad():
        fused = FlopAnalyzer(fuse_for_inference(net), (x, ))
        fused.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fused.set_op_handle(**{'aten::mkldnn_convolution': conv_mode_handle, 'aten::addmm_': addmm_flop_jit})
        # the fused copy folds GroupNorm into the reduce conv (its statistics are reductions, not MACs) and
        # saves W_a at full resolution (8 x 8 channels, 32 x 32; the FFN's LayerNorm is traced differently)
        saved = built.total() - built.by_operator()['group_norm'] - fused.total()
        assert 0.9 * 8 * 8 * 32 * 32 < saved <= 8 * 8 * 32 * 32


def python_prints_ints(code):
    """The integers a fresh interpreter running ``code`` prints (glibc settings are per process)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [int(v) for v in out.stdout.split()]


def test_keep_freed_memory_keeps_even_a_multi_gigabyte_free():
    """A free larger than 2 GB at the top of the heap must not be trimmed either (ECMA-B at 1280x720
    frees that much per forward; with a 2 GB threshold it page-faulted it back every run)."""
    code = ('import torch, ecma_basicsr\n'
            'from ecma_basicsr.bench.measure import keep_freed_memory, current_rss\n'
            'assert keep_freed_memory()\n'
            'ts = [torch.ones(16_000_000) for _ in range(40)]\n'  # 40 x 64 MB, as a forward allocates
            'peak = current_rss()\n'
            'del ts\n'
            'print(peak, current_rss())\n')
    peak, after = python_prints_ints(code)
    assert after > peak - 2 ** 28, f'RSS fell from {peak} to {after} bytes: freed memory was returned'


def test_mapped_large_allocations_leave_the_kept_heap_alone_and_only_inside_the_block():
    """The MAC count of GRL-B, traced with every allocation on the kept heap, fragmented it past
    12 GB: inside the block a large tensor must be mapped (the program break does not move),
    after it the heap is kept again (the break moves)."""
    code = ('import ctypes, torch, ecma_basicsr\n'
            'from ecma_basicsr.bench.measure import keep_freed_memory, mapped_large_allocations\n'
            'libc = ctypes.CDLL(None); libc.sbrk.restype = ctypes.c_void_p\n'
            'with mapped_large_allocations():\n'  # before keep_freed_memory: no effect, no error
            '    pass\n'
            'assert keep_freed_memory()\n'
            'b0 = libc.sbrk(0)\n'
            'with mapped_large_allocations():\n'
            '    t = torch.ones(2 ** 24)\n'  # 64 MB
            '    b1 = libc.sbrk(0)\n'
            '    del t\n'
            't = torch.ones(2 ** 24)\n'
            'print(b1 - b0, libc.sbrk(0) - b1)\n')
    inside, after = python_prints_ints(code)
    assert inside < 2 ** 25, f'the heap grew by {inside} bytes for a 64 MB tensor inside the block'
    assert after >= 2 ** 25, f'the heap grew by {after} bytes for a 64 MB tensor after the block'


def test_stage_profile_names_the_unet_stages_and_accounts_for_every_mac(capsys):
    from ecma_basicsr.bench.networks import build, parse_spec
    from ecma_basicsr.bench.stages import main, stage_macs, stages, time_stages
    ecma = build(parse_spec(TINY_ECMA))
    assert [n for n, _ in stages(ecma)] == ['intro', 'body.encoders.0', 'body.encoders.1', 'body.downs.0',
                                            'body.decoders.0', 'body.decoders.1', 'body.fusions.0', 'ending']
    naf = build(parse_spec('NAFNet:width=8,enc_blk_nums=[1],dec_blk_nums=[1],middle_blk_num=1'))
    assert [n for n, _ in stages(naf)] == ['intro', 'ending', 'encoders.0', 'downs.0', 'middle_blks', 'ups.0',
                                           'decoders.0']
    macs, total = stage_macs(ecma, (1, 3, 16, 24))
    assert macs['intro'] == 3 * 9 * 8 * 16 * 24  # a 3x3 conv 3 -> 8 channels at every pixel
    assert all(macs[n] > 0 for n in macs) and sum(macs.values()) <= total
    assert total - sum(macs.values()) < 1e-3 * total  # only the global residual add lies outside
    seconds, shapes, whole = time_stages(ecma, torch.rand(1, 3, 16, 24), repeats=2)
    assert set(seconds) == set(macs) and all(s > 0 for s in seconds.values())
    assert sum(seconds.values()) <= whole
    assert shapes['body.encoders.1'] == (1, 16, 8, 12) and shapes['body.fusions.0'] == (1, 16, 8, 12)
    main(['--nets', TINY_ECMA, '--size', '24x16', '--repeats', '1'])
    out = capsys.readouterr().out
    assert '| body.decoders.1 | 8x16x24 |' in out and '**whole forward**' in out
    with pytest.raises(SystemExit):
        main(['--nets', 'NoSuchNet', '--size', '24x16'])
    assert 'NoSuchNet' in capsys.readouterr().err


def test_list_names_every_preset_and_group(capsys):
    from ecma_basicsr.bench.cli import main
    from ecma_basicsr.bench.networks import GROUPS, presets
    assert main(['--list']) == 0
    out = capsys.readouterr().out
    for label, p in presets().items():
        assert any(line.split()[:3] == [label, p.task, p.arch + ':'] for line in out.splitlines()), label
    assert all(f'group {name}:' in out for name in GROUPS)


def test_rounds_interleave_the_networks_and_pool_their_runs(tmp_path, capsys):
    from ecma_basicsr.cli import main
    code = main(['bench', '--nets', TINY_ECMA, TINY_SR, '--sizes', '32x32', '--repeats', '2', '--rounds', '2',
                 '--threads', '1', '--gemm-n', '128', '--no-macs', '--out', str(tmp_path)])
    assert code == 0
    log = capsys.readouterr().out
    order = [line.split()[0] for line in log.splitlines() if '(round ' in line]
    assert order == ['tiny', 'tinysr', 'tiny', 'tinysr']  # A B A B, not A A B B
    with open(tmp_path / 'raw.json') as f:
        raw = json.load(f)
    rows = {r['label']: r for r in raw}
    for label in ('tiny', 'tinysr'):
        res = rows[label]['sizes']['32x32']
        lat = res['latency_ms']
        assert res['rounds'] == 2 and lat['runs'] == 4 and len(lat['times']) == 4
        assert lat['min'] == min(lat['times']) and lat['max'] == max(lat['times'])
        assert len(res['gemm_probes']) == 2
    with open(tmp_path / 'results.md') as f:
        assert 'in each of 2 interleaved rounds, pooled' in f.read()
    assert main(['bench', '--nets', TINY_ECMA, '--rounds', '0']) == 1
    assert '--rounds must be >= 1' in capsys.readouterr().err
