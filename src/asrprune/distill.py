"""Layer-wise distillation: each student block's output towards the teacher's, through a map.

Two directions (DESIGN.md): the paper's Eq. 8 maps the teacher (MSE(h_s, W h_t)), which
can shrink both sides towards zero together; mapping the student (MSE(W h_s, h_t), as
CoFiPruning does) pins the target to the teacher's own states, so it cannot collapse.
Padding frames are excluded; each map starts as the identity, where the student starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asrprune.errors import AsrpruneError

MAP_SIDES = ("student", "teacher")


class LayerwiseDistill(nn.Module):
    """Mean over blocks of the masked MSE between student and teacher block outputs.

    Args:
        num_blocks: blocks distilled (one linear map each). d_model: hidden width of both.
        map_side: "student" or "teacher", the side the learned map is applied to.
    forward: student and teacher hidden states (lists of (B, T, d)), valid (B, T) bool
        -> scalar loss.
    """

    def __init__(self, num_blocks: int, d_model: int, map_side: str = "student"):
        super().__init__()
        if map_side not in MAP_SIDES:
            raise AsrpruneError(
                f"distillation map_side: expected one of {', '.join(MAP_SIDES)}, got {map_side!r}"
            )
        self.map_side = map_side
        self.maps = nn.ModuleList(
            nn.Linear(d_model, d_model, bias=False) for _ in range(num_blocks)
        )
        with torch.no_grad():
            for m in self.maps:
                m.weight.copy_(torch.eye(d_model))

    def forward(
        self,
        student: Sequence[torch.Tensor],
        teacher: Sequence[torch.Tensor],
        valid: torch.Tensor,
    ) -> torch.Tensor:
        if not len(student) == len(teacher) == len(self.maps):
            raise AsrpruneError(
                f"distillation expects {len(self.maps)} blocks, got {len(student)} student and "
                f"{len(teacher)} teacher hidden states"
            )
        w = valid[..., None].to(student[0].dtype)  # (B, T, 1)
        count = w.sum() * student[0].size(-1)
        total = student[0].new_zeros(())
        for s, t, proj in zip(student, teacher, self.maps, strict=True):
            t = t[:, : s.size(1)].detach()  # (B, T, d)
            s_hat, t_hat = (proj(s), t) if self.map_side == "student" else (s, proj(t))
            total = total + ((s_hat - t_hat).pow(2) * w).sum() / count
        return total / len(self.maps)


def valid_frames(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on real frames."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]
