"""Metric-learning losses: sub-center ArcFace and batch-hard triplet (torch imported on first use)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .config import TrainConfig

__all__ = ["make_loss"]


def make_loss(config: TrainConfig, num_classes: int, dim: int) -> torch.nn.Module:
    """The loss of ``config.loss`` (sub-center ArcFace or batch-hard triplet) for embeddings of size ``dim``."""

    import torch
    import torch.nn.functional as F

    class SubCenterArcFace(torch.nn.Module):
        """Additive angular margin on the target class; each class has ``k`` sub-centres (max over them)."""

        def __init__(self) -> None:
            super().__init__()
            self.k, self.num_classes = config.sub_centers, num_classes
            self.s, self.m = config.scale, config.effective_margin
            self.weight = torch.nn.Parameter(torch.randn(num_classes * self.k, dim) * 0.01)

        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            cos = F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight, dim=1))
            cos = cos.view(len(emb), self.num_classes, self.k).amax(2).clamp(-1 + 1e-6, 1 - 1e-6)
            target = cos.gather(1, labels[:, None])
            theta = torch.acos(target)
            # past pi - m the margin would make the logit go up again: fall back to a linear penalty
            with_margin = torch.where(theta + self.m < math.pi, torch.cos(theta + self.m),
                                      target - self.m * math.sin(self.m))
            logits = cos.scatter(1, labels[:, None], with_margin) * self.s
            return F.cross_entropy(logits, labels)

        @torch.no_grad()
        def imprint(self, means: torch.Tensor) -> None:
            """Start each class (all sub-centres) at the mean embedding of its images."""
            w = F.normalize(means.float(), dim=1).repeat_interleave(self.k, 0)
            self.weight.copy_(w + torch.randn_like(w) * (0.01 if self.k > 1 else 0.0))

    class BatchHardTriplet(torch.nn.Module):
        """Batch-hard triplet loss on cosine distance of L2-normalised embeddings (P x K batches)."""

        def __init__(self) -> None:
            super().__init__()
            self.m = config.effective_margin

        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            e = F.normalize(emb.float(), dim=1)
            dist = 1.0 - e @ e.T
            same = labels[:, None] == labels[None, :]
            eye = torch.eye(len(e), dtype=torch.bool, device=e.device)
            pos = same & ~eye
            has = pos.any(1) & (~same).any(1)
            if not has.any():
                return (emb * 0).sum()
            hardest_pos = dist.masked_fill(~pos, -1.0).amax(1)
            hardest_neg = dist.masked_fill(same, 3.0).amin(1)
            return F.relu(hardest_pos - hardest_neg + self.m)[has].mean()

    return SubCenterArcFace() if config.loss == "arcface" else BatchHardTriplet()
