"""Structured pruning: the Lagrangian budget on the model's own gates
(``asrprune.model.hardconcrete``), distillation, compaction, and the baselines."""
