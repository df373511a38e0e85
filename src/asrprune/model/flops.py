"""Counting FLOPs with ``torch.utils.flop_counter``, CPU attention included.

The counter has formulas for the CUDA attention kernels but not for the CPU one that
``scaled_dot_product_attention`` dispatches to, so on a CPU it silently counts attention's
T^2 work as zero. ``flop_counter()`` adds that kernel with the counter's own formula.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

CPU_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """A quiet ``FlopCounterMode`` that also counts CPU scaled-dot-product attention."""
    return FlopCounterMode(display=False, custom_mapping={CPU_ATTENTION: _cpu_attention_flops})
