"""The paper's tables and figures, built from a run's own result files (metrics, speed,
pruning summaries), never from numbers typed in by hand."""
