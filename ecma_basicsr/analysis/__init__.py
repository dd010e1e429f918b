"""Complexity analysis: parameter and MAC counting (:mod:`.flops`) and the paper's Table 1 (:mod:`.table1`)."""
