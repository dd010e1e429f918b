"""Tables 8/9 ablations aligned in size with ECMA-T (Sec. 4.5), as ``python -m ecma_basicsr.analysis.ablations``
prints them."""
import pytest

from ecma_basicsr.analysis import ablations
from ecma_basicsr.analysis.flops import analyze_macs, count_params
from ecma_basicsr.archs.ecma_arch import ABLATIONS, ECMA


def test_per_block_sizes_equal_a_full_count():
    kwargs = ablations.row_kwargs('table9_three_large')
    params, macs = ablations.block_costs(kwargs).size(kwargs['enc_blocks'])
    net = ECMA(**dict(kwargs, large_kernel_mode='fft'))
    assert params == count_params(net)
    assert macs == pytest.approx(analyze_macs(net, ablations.REF_INPUT).total, rel=1e-9)


def test_every_row_within_3_percent_params_and_5_percent_macs_of_ecma_t(capsys):
    rows = {r[0]: r for r in ablations.table()}
    assert set(rows) == set(ABLATIONS)
    _, _, _, ref_params, ref_macs = rows['proposed']
    for name, blocks, width, params, macs in rows.values():
        assert abs(params / ref_params - 1) <= 0.03, name
        assert abs(macs / ref_macs - 1) <= 0.05, name
        assert params == count_params(ECMA(**ablations.row_kwargs(name)))
    ablations.main([])
    printed = capsys.readouterr().out
    assert '| table9_without_large | 1,1,3,12 | 32 |' in printed and printed.count('\n| table') == len(ABLATIONS) - 1


def test_rows_differ_from_ecma_t_only_by_their_ablation_and_alignment():
    for name, change in ABLATIONS.items():
        assert set(change) <= {'lam_combine', 'lam_sizes', 'cascade', 'large_domain', 'enc_blocks', 'width'}, name
