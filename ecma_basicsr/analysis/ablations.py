"""The ablations of Tables 8 and 9, aligned in size with ECMA-T (paper Sec. 4.5).

"To ensure a fair comparison, we modify block and channel numbers to align the model size and
complexity with our original proposed design." Each row of
:data:`~ecma_basicsr.archs.ecma_arch.ABLATIONS` carries the blocks per stage (and width, where
blocks alone cannot) that bring it within 3% of ECMA-T's parameters and 5% of its MACs (256x256
input, FFT work counted), as the paper's rows were.

``python -m ecma_basicsr.analysis.ablations`` prints the table (row, blocks, width, params, MACs,
difference to ECMA-T); ``--search`` re-derives the configurations.

Sizes are computed per block: a U-Net's parameters and MACs are those of its fixed parts plus,
per level, the number of blocks times the cost of one encoder block and its mirrored decoder block
(every block of a level sees the same input), counted once with mmengine on a one-block-per-level
network. ``tests/test_ablations.py`` checks that this sum equals a full count.
"""
import argparse
import itertools
from dataclasses import dataclass

from ecma_basicsr.archs.ecma_arch import ABLATIONS, VARIANTS

REF_INPUT = (1, 3, 256, 256)
PARAMS_TOL, MACS_TOL = 0.03, 0.05
BASE = dict(VARIANTS['T'])  # ECMA-T: the network every ablation row is compared with


@dataclass
class BlockCosts:
    """Parameters and MACs (FFT included) of the fixed parts and of one block pair per level."""

    fixed_params: int
    fixed_macs: float
    level_params: list
    level_macs: list

    def size(self, enc_blocks):
        """(params, MACs) of the network with ``enc_blocks`` blocks per encoder level."""
        params = self.fixed_params + sum(n * p for n, p in zip(enc_blocks, self.level_params))
        macs = self.fixed_macs + sum(n * m for n, m in zip(enc_blocks, self.level_macs))
        return params, macs


def row_kwargs(name):
    """ECMA constructor arguments of an ablation row: ECMA-T's with the row's changes."""
    return dict(BASE, **ABLATIONS[name])


def block_costs(kwargs):
    """:class:`BlockCosts` of the ECMA built from ``kwargs`` (its ``enc_blocks`` are ignored)."""
    key = repr(sorted((k, v) for k, v in kwargs.items() if k != 'enc_blocks'))
    if key not in _COSTS:
        _COSTS[key] = _count_block_costs(kwargs)
    return _COSTS[key]


_COSTS = {}  # one count per configuration and process: the table, the search and the tests reuse it


def _count_block_costs(kwargs):
    from ecma_basicsr.analysis.flops import analyze_macs, count_params
    from ecma_basicsr.archs.ecma_arch import ECMA

    levels = len(kwargs['enc_blocks'])
    net = ECMA(**dict(kwargs, enc_blocks=(1,) * levels, large_kernel_mode='fft'))
    count = analyze_macs(net, REF_INPUT)
    body = net.body
    pairs = [(body.encoders[i][0], body.decoders[levels - 1 - i][0]) for i in range(levels)]
    level_params = [count_params(a) + count_params(b) for a, b in pairs]
    level_macs = [float(count.by_module[f'body.encoders.{i}.0'] + count.by_module[f'body.decoders.{levels - 1 - i}.0'])
                  for i in range(levels)]
    return BlockCosts(count_params(net) - sum(level_params), count.total - sum(level_macs), level_params, level_macs)


def deviation(size, target):
    """How far ``size`` is from ``target`` in units of the tolerances (<= 1: aligned)."""
    return max(abs(size[0] / target[0] - 1) / PARAMS_TOL, abs(size[1] / target[1] - 1) / MACS_TOL)


def search(name, target, widths=(28, 32, 36), max_blocks=(4, 4, 6, 16)):
    """Blocks (and width) for row ``name`` closest to ``target`` (params, MACs).

    Among configurations within tolerance, prefer ECMA-T's width, then the fewest blocks moved
    from ECMA-T's, then the smallest deviation.

    Returns:
        tuple: (width, enc_blocks, (params, MACs)).
    """
    best = None
    for width in widths:
        costs = block_costs(dict(row_kwargs(name), width=width))
        for blocks in itertools.product(*(range(1, m + 1) for m in max_blocks)):
            size = costs.size(blocks)
            dev = deviation(size, target)
            moved = sum(abs(a - b) for a, b in zip(blocks, BASE['enc_blocks']))
            key = (dev > 1, width != BASE['width'], moved if dev <= 1 else 0, dev)
            if best is None or key < best[0]:
                best = (key, width, blocks, size)
    return best[1:]


def table():
    """Rows (name, enc_blocks, width, params, MACs) of ECMA-T and every ablation, sized per block."""
    rows = []
    for name in ABLATIONS:
        kwargs = row_kwargs(name)
        params, macs = block_costs(kwargs).size(kwargs['enc_blocks'])
        rows.append((name, tuple(kwargs['enc_blocks']), kwargs['width'], params, macs))
    return rows


def format_table(rows):
    ref = next(r for r in rows if r[0] == 'proposed')
    lines = ['| row | blocks | width | params | MACs (256x256, +FFT) | params diff | MACs diff |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for name, blocks, width, params, macs in rows:
        lines.append(f'| {name} | {",".join(map(str, blocks))} | {width} | {params / 1e6:.3f} M | {macs / 1e9:.2f} G | '
                     f'{100 * (params / ref[3] - 1):+.1f}% | {100 * (macs / ref[4] - 1):+.1f}% |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m ecma_basicsr.analysis.ablations',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--search', action='store_true', help='re-derive each row\'s blocks / width')
    args = parser.parse_args(argv)
    import ecma_basicsr  # noqa: F401  (registries)

    if args.search:
        target = block_costs(row_kwargs('proposed')).size(BASE['enc_blocks'])
        for name in ABLATIONS:
            width, blocks, size = search(name, target)
            print(f'{name}: width={width}, enc_blocks={blocks}  deviation {deviation(size, target):.2f} '
                  f'({100 * (size[0] / target[0] - 1):+.1f}% params, {100 * (size[1] / target[1] - 1):+.1f}% MACs)',
                  flush=True)
        return 0
    print(format_table(table()))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
