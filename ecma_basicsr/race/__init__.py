"""Equal-budget training races: does ECMA learn as well as its rivals and better than its ablations?

``basicsr race`` (or ``python -m ecma_basicsr.race``) trains every contender of a task through the
real ``basicsr train`` path with generated option files, at a matched budget (MACs per pixel within
20%, same iterations, batch, crop, optimizer and schedule; each network with its own paper's loss),
evaluates the trained networks on real test sets with the bench harness's protocols, and writes a
markdown table and a PNG of validation PSNR against iteration.

* :mod:`.contenders`: the tasks and their contenders, the one table the command, the tests and the
  README read; the budget check.
* :mod:`.run`: sample data, option files, the training/evaluation jobs, the command line.
* :mod:`.evaluate`: one trained network on the test sets (a subprocess per contender).
* :mod:`.report`: ``race.json`` -> ``results.md`` and ``curves.png``.

The paper's claims under test: the full ECMA against Table 8's element-wise addition and Table 9's
"without cascading" (both size-aligned, as in Sec. 4.5), and ECMA against NAFNet and SwinIR.
"""
from ecma_basicsr.errors import UserError


class RaceError(UserError):
    """A race cannot run as asked (unknown task or contender, missing test data, budget mismatch)."""
