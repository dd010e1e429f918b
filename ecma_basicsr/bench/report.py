"""Outputs of ``basicsr bench``: ``results.csv``, ``results.md``, plots and ``provenance.json``.

``results.csv`` has one row per network and per reference (bicubic / identity) with these
columns (``@S`` repeats for each size ``S`` such as ``256x256``, ``@T`` for each test set ``T``):

==========================  ===================================================================
column                      meaning
==========================  ===================================================================
label, kind                 row name; ``network`` or ``reference``
arch, config, task, scale   registered arch, constructor arguments, ``sr``/``restore``, upscale
checkpoint                  weights file (empty: random weights, no PSNR)
params                      parameters
input@S                     input H x W fed for output size S (S / scale for SR networks)
gmacs@S                     GMACs by mmengine without the FFT work (the papers' count)
gmacs_fft@S                 GMACs with the FFT work (formula in :mod:`ecma_basicsr.analysis.flops`)
fft_gmacs@S                 the FFT work alone
macs_estimated@S            1 when scaled from a smaller size (the traced count did not fit the budget)
lat_median_ms@S             median latency of the timed runs (``lat_mean_ms``, ``lat_min_ms``,
                            ``lat_max_ms``, ``lat_iqr_ms`` with >= 4 runs; ``runs``)
peak_mem_mb@S               peak memory above the loaded model during the runs (CPU: peak RSS)
compile_s@S                 with ``--compile``: seconds of the first, compiling forward (not timed)
gmac_per_s@S                achieved GMAC/s = gmacs_fft / median latency
gemm_gmac_per_s@S           float32 GEMM throughput measured right before this network's runs
gemm_frac@S                 gmac_per_s / gemm_gmac_per_s (medians)
gemm_frac_best@S            MAC/s of the fastest run / the fastest GEMM probe run (contention only ever
                            slows a run down, so on a shared machine this is the steadier figure)
status@S                    ``ok``, ``over budget: ...``, ``timeout``, ``out of memory``, ``error: ...``
psnr@T, ssim@T, images@T    mean PSNR (dB) / SSIM on the set under its protocol, images evaluated
eval_status@T               ``ok``, ``partial: ...`` or the failure
status                      row-level failure (e.g. the network could not be built), else ``ok``
==========================  ===================================================================
"""
import csv
import datetime
import json
import os
import os.path as osp
import platform
import subprocess

SIZE_COLUMNS = ('input', 'gmacs', 'gmacs_fft', 'fft_gmacs', 'macs_estimated', 'lat_median_ms', 'lat_mean_ms',
                'lat_min_ms', 'lat_max_ms', 'lat_iqr_ms', 'runs', 'peak_mem_mb', 'compile_s', 'gmac_per_s',
                'gemm_gmac_per_s',
                'gemm_frac', 'gemm_frac_best', 'status')
EVAL_COLUMNS = ('psnr', 'ssim', 'images', 'eval_status')
MODE_TEXT = {'eager': 'eager (ECMA in its fused inference form, the others as built)',
             'compiled': "compiled (rows marked '(compiled)': torch.compile, inductor with frozen weights, every "
                         'network as built, compiled per size; compile times in the notes)'}
BASE_COLUMNS = ('label', 'kind', 'arch', 'config', 'task', 'scale', 'checkpoint', 'params')


def csv_columns(size_keys, set_names):
    cols = list(BASE_COLUMNS)
    for s in size_keys:
        cols += [f'{c}@{s}' for c in SIZE_COLUMNS]
    for t in set_names:
        cols += [f'{c}@{t}' for c in EVAL_COLUMNS]
    return cols + ['status']


def size_metrics(result):
    """The per-size numbers of one worker result (None where not measured)."""
    r = result or {}
    lat = r.get('latency_ms') or {}
    macs, fft = r.get('macs'), r.get('fft')
    total = macs + (fft or 0) if macs is not None else None
    out = dict(input='x'.join(map(str, r['input'])) if r.get('input') else None,
               gmacs=macs / 1e9 if macs is not None else None,
               gmacs_fft=total / 1e9 if total is not None else None,
               fft_gmacs=fft / 1e9 if fft is not None else None,
               macs_estimated=int(bool(r.get('macs_estimated'))) if macs is not None else None,
               lat_median_ms=lat.get('median'), lat_mean_ms=lat.get('mean'), lat_min_ms=lat.get('min'),
               lat_max_ms=lat.get('max'), lat_iqr_ms=lat.get('iqr'), runs=lat.get('runs'),
               peak_mem_mb=r['peak_mem_bytes'] / 2**20 if r.get('peak_mem_bytes') is not None else None,
               compile_s=r.get('compile_s'),
               gemm_gmac_per_s=r['gemm_macs_per_s'] / 1e9 if r.get('gemm_macs_per_s') else None,
               gmac_per_s=None, gemm_frac=None, gemm_frac_best=None, status=r.get('status'))
    if total is not None and lat.get('median'):
        out['gmac_per_s'] = total / 1e9 / (lat['median'] / 1e3)
        if out['gemm_gmac_per_s']:
            out['gemm_frac'] = out['gmac_per_s'] / out['gemm_gmac_per_s']
        if r.get('gemm_best_macs_per_s'):
            out['gemm_frac_best'] = total / (lat['min'] / 1e3) / r['gemm_best_macs_per_s']
    return out


def flatten(row, size_keys, set_names):
    spec = row.spec or {}
    d = dict(label=row.label, kind=row.kind, arch=spec.get('arch'),
             config=', '.join(f'{k}={v}' for k, v in (spec.get('kwargs') or {}).items()) or None,
             task=spec.get('task'), scale=spec.get('scale'), checkpoint=spec.get('checkpoint'), params=row.params,
             status=row.status)
    for s in size_keys:
        if s in row.sizes:
            d.update({f'{k}@{s}': v for k, v in size_metrics(row.sizes[s]).items()})
    for t in set_names:
        if t in row.evals:
            e = row.evals[t]
            d.update({f'psnr@{t}': e.get('psnr'), f'ssim@{t}': e.get('ssim'), f'images@{t}': e.get('images'),
                      f'eval_status@{t}': e.get('status')})
    return d


def write_csv(path, rows, size_keys, set_names):
    cols = csv_columns(size_keys, set_names)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction='ignore')
        writer.writeheader()
        for row in rows:
            d = flatten(row, size_keys, set_names)
            writer.writerow({c: ('' if d.get(c) is None else (f'{d[c]:.6g}' if isinstance(d[c], float) else d[c]))
                             for c in cols})


def _git(*args):
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        return subprocess.run(['git', '-C', repo, *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def provenance(cfg, info, argv):
    """Where the numbers come from: git revision, versions, device, threads, date, command."""
    import torch

    from ..archs import native_conv
    from .measure import device_name
    try:
        import basicsr
        basicsr_version = basicsr.__version__
    except Exception:  # noqa: BLE001
        basicsr_version = None
    try:
        import mmengine
        mmengine_version = mmengine.__version__
    except ImportError:
        mmengine_version = None
    dirty = _git('status', '--porcelain', '--untracked-files=no')
    return dict(
        git_revision=_git('rev-parse', 'HEAD') or None,
        git_dirty_files=len(dirty.splitlines()) if dirty else 0,
        torch=torch.__version__, basicsr=basicsr_version, mmengine=mmengine_version,
        python=platform.python_version(), device=cfg.device, device_name=device_name(cfg.device),
        threads=cfg.threads, date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        command='basicsr bench ' + ' '.join(argv),
        gemm_gmac_per_s_start=info.get('gemm_start', 0) / 1e9, gemm_gmac_per_s_end=info.get('gemm_end', 0) / 1e9,
        gemm_gmac_per_s_start_best=info.get('gemm_start_best', 0) / 1e9,
        gemm_gmac_per_s_end_best=info.get('gemm_end_best', 0) / 1e9, keep_freed_memory=cfg.keep_freed_memory,
        modes=list(cfg.modes), ecma_lam_convs=native_conv.status(),
        load_average_start=info.get('load_start'), load_average_end=info.get('load_end'),
        elapsed_s=info.get('elapsed_s'), statistic=cfg.statistic, warmup=cfg.warmup, repeats=cfg.repeats,
        rounds=cfg.rounds,
        budget_s=cfg.budget, eval_budget_s=cfg.eval_budget, sizes=[f'{w}x{h}' for h, w in cfg.sizes])


def _ms(v):
    """Milliseconds as text: 3 significant digits, seconds from 10 s on."""
    if v >= 10000:
        return f'{v / 1e3:.1f} s'
    if v >= 100:
        return f'{v:.0f} ms'
    return f'{v:.3g} ms'


def _cell_lat(m, statistic='median'):
    if m.get('lat_median_ms') is None:
        return ''
    text = _ms(m[f'lat_{statistic}_ms'])
    if m.get('runs', 0) > 1:
        text += f" [{_ms(m['lat_min_ms'])} - {_ms(m['lat_max_ms'])}]"
    return text + f" n={m['runs']}"


def write_markdown(path, rows, size_keys, set_names, prov, plots):
    lines = ['# basicsr bench results', '']
    lines += [f"- date: {prov['date']}", f"- git: {prov['git_revision']}"
              + (f" (+{prov['git_dirty_files']} modified files)" if prov['git_dirty_files'] else ''),
              f"- torch {prov['torch']}, basicsr {prov['basicsr']}, mmengine {prov['mmengine']}, "
              f"python {prov['python']}",
              f"- device: {prov['device']} = {prov['device_name']}, threads: {prov['threads']}",
              f"- float32 GEMM ceiling: {prov['gemm_gmac_per_s_start']:.1f} GMAC/s at the start "
              f"(best run {prov['gemm_gmac_per_s_start_best']:.1f}), {prov['gemm_gmac_per_s_end']:.1f} at the end "
              f"(best {prov['gemm_gmac_per_s_end_best']:.1f}); each network's fraction uses the probe taken "
              'right before its runs',
              f"- glibc keeps freed memory (--keep-freed-memory): {'yes' if prov['keep_freed_memory'] else 'no'}",
              '- modes: ' + ' and '.join(MODE_TEXT[m] for m in prov.get('modes', ['eager'])),
              "- ECMA's LAM convolutions (fused form): " + prov.get('ecma_lam_convs', 'pytorch (no native kernel yet)'),
              f"- load average (1 min) at start/end: {prov['load_average_start']} / {prov['load_average_end']}",
              f"- latency: {prov['warmup']} warm-up, {prov['statistic']} of up to {prov['repeats']} timed runs "
              + (f"in each of {prov['rounds']} interleaved rounds, pooled " if prov.get('rounds', 1) > 1 else '')
              + f"([min - max] in brackets), budget {prov['budget_s']:.0f} s per network and size",
              f"- command: `{prov['command']}`", '']
    head = ['network', 'params (M)']
    for s in size_keys:
        head += [f'GMACs {s} (+FFT)', f'latency {s}', f'peak MB {s}', f'% GEMM {s}']
    head += [f'{t} PSNR / SSIM' for t in set_names]
    lines += ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    notes, cut, compiled = [], [], []
    for row in rows:
        cells = [row.label + (' *(ref)*' if row.kind == 'reference' else ''),
                 f'{row.params / 1e6:.3f}' if row.params else '']
        for s in size_keys:
            m = size_metrics(row.sizes.get(s)) if s in row.sizes else {}
            if m.get('gmacs') is not None:
                est = '~' if m.get('macs_estimated') else ''
                cells.append(f"{est}{m['gmacs']:.2f} ({est}{m['gmacs_fft']:.2f})")
            else:
                cells.append('')
            cells.append(_cell_lat(m, prov.get('statistic', 'median')))
            cells.append(f"{m['peak_mem_mb']:.0f}" if m.get('peak_mem_mb') is not None else '')
            frac = f"{100 * m['gemm_frac']:.0f}%" if m.get('gemm_frac') is not None else ''
            if frac and m.get('gemm_frac_best') is not None:
                frac += f" ({100 * m['gemm_frac_best']:.0f}%)"
            cells.append(frac)
            if m.get('compile_s') is not None:
                compiled.append(f"{row.label} at {s} {m['compile_s']:.0f} s")
            if m.get('status', 'ok').startswith('ok ('):
                cut.append(f"{row.label} at {s} ({m['runs']})")
            elif m.get('status') and m['status'] != 'ok':
                notes.append(f'{row.label} at {s}: {m["status"]}')
        for t in set_names:
            e = row.evals.get(t)
            if e and e.get('psnr') is not None:
                cells.append(f"{e['psnr']:.2f} / {e['ssim']:.4f}" + ('' if e.get('status') == 'ok' else ' (partial)'))
            else:
                cells.append('')
            if e and e.get('status') != 'ok':
                notes.append(f'{row.label} on {t}: {e.get("status")}')
        if row.status != 'ok':
            notes.append(f'{row.label}: {row.status}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', 'GMACs: mmengine count without the FFT work, in brackets with it; `~` = scaled from the smaller '
              'size (the traced count did not fit the time budget). SR networks are measured at the output size '
              '(input = size / scale). % GEMM: achieved MAC/s (FFT counted) over the float32 GEMM throughput '
              'probed right before the network, from medians; in brackets the fastest run against the fastest '
              'probe. PSNR/SSIM only where weights were given; references need none.', '']
    if cut:
        notes.append('fewer timed runs than --repeats to stay within the budget: ' + ', '.join(cut))
    if compiled:
        notes.append('first forward, compiling (not in the latency): ' + ', '.join(compiled))
    if notes:
        lines += ['Notes:', ''] + [f'- {n}' for n in notes] + ['']
    if plots:
        # relative links: the folder can be moved or published as it is
        lines += ['Plots:', ''] + [f'![{osp.basename(p)}]({osp.basename(p)})' for p in plots] + ['']
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


def default_plot_size(size_keys, task):
    """MACs the PSNR plot uses, as the papers count them: SR at 1280x720 output, restoration at 256x256."""
    want = '1280x720' if task == 'sr' else '256x256'
    if want in size_keys:
        return want
    return size_keys[-1] if task == 'sr' else size_keys[0]


def make_plots(out_dir, rows, size_keys, set_names, plot_size=None, set_tasks=None):
    """PSNR-vs-MACs per test set (Fig. 1) and latency-vs-MACs; returns the PNG paths.

    ``plot_size`` fixes the size whose MACs the PSNR plots use; by default it follows the papers
    (:func:`default_plot_size` of each set's task in ``set_tasks``).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    paths = []
    for t in set_names:
        size = plot_size or default_plot_size(size_keys, (set_tasks or {}).get(t))
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        points, refs = 0, []
        for row in rows:
            e = row.evals.get(t)
            if not e or e.get('psnr') is None:
                continue
            if row.kind == 'reference':
                refs.append((row.label, e['psnr']))
                continue
            m = size_metrics(row.sizes.get(size))
            if m.get('gmacs_fft') is None:
                continue
            ax.scatter(m['gmacs_fft'], e['psnr'], s=30)
            ax.annotate(row.label, (m['gmacs_fft'], e['psnr']), textcoords='offset points', xytext=(4, 3), fontsize=8)
            points += 1
        for label, psnr in refs:  # the floors, drawn across whatever x range the points gave
            ax.axhline(psnr, ls='--', color='gray', lw=1)
            ax.annotate(f'{label}: {psnr:.2f} dB', (0.01, psnr), xycoords=('axes fraction', 'data'), va='bottom',
                        fontsize=8, color='gray')
        ax.set_xlabel(f'GMACs at {size} (FFT counted)')
        ax.set_ylabel(f'PSNR on {t} (dB)')
        title = f'PSNR vs MACs: {t}'
        if not points:
            title += ' (no network with weights)'
        ax.set_title(title)
        ax.grid(alpha=0.3)
        path = osp.join(out_dir, f'psnr_vs_macs_{_safe(t)}.png')
        fig.savefig(path, dpi=120, bbox_inches='tight')
        plt.close(fig)
        paths.append(path)
    fig, axes = plt.subplots(1, len(size_keys), figsize=(6.0 * len(size_keys), 4.6), squeeze=False)
    for ax, s in zip(axes[0], size_keys):
        gemm, xs = [], []
        for row in rows:
            m = size_metrics(row.sizes.get(s)) if s in row.sizes else {}
            if m.get('gmacs_fft') is None or m.get('lat_median_ms') is None:
                continue
            ax.scatter(m['gmacs_fft'], m['lat_median_ms'], s=30)
            ax.annotate(row.label, (m['gmacs_fft'], m['lat_median_ms']), textcoords='offset points',
                        xytext=(4, 3), fontsize=7)
            xs.append(m['gmacs_fft'])
            if m.get('gemm_gmac_per_s'):
                gemm.append(m['gemm_gmac_per_s'])
        if gemm:
            import statistics
            g = statistics.median(gemm)
            line = [min(xs) / 1.5, max(xs) * 1.5]
            ax.plot(line, [x / g * 1e3 for x in line], ls='--', color='gray', lw=1,
                    label=f'at GEMM speed ({g:.0f} GMAC/s)')
            ax.legend(fontsize=8, loc='upper left')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel(f'GMACs at {s} (FFT counted)')
        ax.set_ylabel('median latency (ms)')
        ax.set_title(f'latency vs MACs at {s}')
        ax.grid(alpha=0.3, which='both')
    path = osp.join(out_dir, 'latency_vs_macs.png')
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)
    paths.append(path)
    return paths


def _safe(name):
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)


def rerender(out_dir, plot_size=None):
    """Write results.csv / results.md / plots again from ``raw.json`` and ``provenance.json`` of a run."""
    from .runner import Row
    with open(osp.join(out_dir, 'raw.json')) as f:
        rows = [Row(**d) for d in json.load(f)]
    with open(osp.join(out_dir, 'provenance.json')) as f:
        prov = json.load(f)
    return _render(out_dir, rows, prov, plot_size)


def _render(out_dir, rows, prov, plot_size=None):
    """results.csv, the plots and results.md from the rows and the provenance; returns their paths."""
    size_keys = prov['sizes']
    sets = prov.get('testsets') or []
    set_names = [t['name'] for t in sets] or sorted({t for r in rows for t in r.evals})
    write_csv(osp.join(out_dir, 'results.csv'), rows, size_keys, set_names)
    plots = make_plots(out_dir, rows, size_keys, set_names, plot_size, {t['name']: t['task'] for t in sets})
    write_markdown(osp.join(out_dir, 'results.md'), rows, size_keys, set_names, prov, plots)
    return [osp.join(out_dir, n) for n in ('results.csv', 'results.md')] + plots


def write_all(out_dir, rows, cfg, info, argv, testsets, plot_size=None):
    """Write every output into ``out_dir``; returns the list of written paths."""
    os.makedirs(out_dir, exist_ok=True)
    prov = provenance(cfg, info, argv)
    prov['testsets'] = [dict(name=ts.name, task=ts.task, path=ts.path, sigma=ts.sigma) for ts in testsets]
    with open(osp.join(out_dir, 'provenance.json'), 'w') as f:
        json.dump(prov, f, indent=2)
    with open(osp.join(out_dir, 'raw.json'), 'w') as f:
        json.dump([dict(row.__dict__) for row in rows], f, indent=1, default=str)
    written = _render(out_dir, rows, prov, plot_size)
    return written[:2] + [osp.join(out_dir, n) for n in ('provenance.json', 'raw.json')] + written[2:]


def main(argv=None):
    """``python -m ecma_basicsr.bench.report DIR``: re-render a bench folder from its raw.json."""
    import argparse
    parser = argparse.ArgumentParser(description='Re-render a bench output folder from its raw.json.')
    parser.add_argument('out_dir')
    parser.add_argument('--plot-size', default=None, help='WxH whose MACs the PSNR plots use')
    a = parser.parse_args(argv)
    for name in ('raw.json', 'provenance.json'):
        if not osp.isfile(osp.join(a.out_dir, name)):
            parser.error(f'{osp.join(a.out_dir, name)} not found: give the --out folder of a basicsr bench run.')
    import ecma_basicsr  # noqa: F401
    for path in rerender(a.out_dir, a.plot_size):
        print(path)


if __name__ == '__main__':
    main()
