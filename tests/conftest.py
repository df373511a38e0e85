"""Test-session settings."""

import torch

# Tiny test models run fastest on one thread; with two, the threads of intra-op
# parallelism fight whatever else runs on a 2-core machine (a step measured 13x slower).
torch.set_num_threads(1)
