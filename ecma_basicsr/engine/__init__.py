"""The training runtime that ``basicsr train`` / ``basicsr test`` install around BasicSR's pipelines.

Exact resume (:mod:`.train_state`), device-aware and fault-tolerant checkpoint loading
(:mod:`.checkpoint`), atomic writes (:mod:`.safe_save`) and the option-file pre-flight
(:mod:`.options_check`).
"""
