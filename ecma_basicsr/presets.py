"""``python -m ecma_basicsr.presets``: every named network configuration, its published size and ours.

The rows come from the ``PRESETS`` tables of the arch files (:func:`ecma_basicsr.archs.presets.all_presets`),
the same tables ``basicsr bench`` and the tests read. ``--arch`` keeps one network family;
``--no-count`` lists without building the networks.
"""
import argparse


def rows(arch=None, count=True):
    """(name, preset, our parameter count or None) for every preset (of ``arch`` when given)."""
    from basicsr.archs import build_network

    from ecma_basicsr.archs.presets import all_presets

    out = []
    for name, preset in all_presets().items():
        if arch and preset.arch.lower() != arch.lower():
            continue
        ours = None
        if count:
            net = build_network({'type': preset.arch, **preset.kwargs})
            ours = sum(p.numel() for p in net.parameters())
        out.append((name, preset, ours))
    return out


def format_rows(table):
    lines = ['| preset | arch | arguments | params (published) | params (ours) | diff | MACs (published) | source |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, p, ours in table:
        args = ', '.join(f'{k}={v}' for k, v in p.kwargs.items())
        args = args if len(args) <= 60 else args[:57] + '...'
        published = f'{p.params / 1e6:.3f} M' if p.params else '-'
        mine = f'{ours / 1e6:.3f} M' if ours is not None else ''
        diff = f'{100 * (ours / p.params - 1):+.1f}%' if ours is not None and p.params else ''
        macs = f'{p.macs / 1e9:.1f} G at {p.macs_input[1]}x{p.macs_input[0]}' if p.macs else '-'
        lines.append(f'| {name} | {p.arch} | {args} | {published} | {mine} | {diff} | {macs} | {p.source} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m ecma_basicsr.presets', description=__doc__.split('\n')[0])
    parser.add_argument('--arch', help='only this registered network (e.g. ECMA, NAFNet, GRL)')
    parser.add_argument('--no-count', action='store_true', help='do not build the networks to count parameters')
    args = parser.parse_args(argv)
    import ecma_basicsr  # noqa: F401  (registries)

    table = rows(args.arch, count=not args.no_count)
    if not table:
        from ecma_basicsr.archs.presets import all_presets
        archs = sorted({p.arch for p in all_presets().values()})
        parser.error(f"no preset of arch '{args.arch}'; archs with presets: {', '.join(archs)}")
    print(format_rows(table))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
