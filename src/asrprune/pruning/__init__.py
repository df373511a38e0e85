"""Structured pruning: hard-concrete gates, the Lagrangian budget, distillation, compaction."""
