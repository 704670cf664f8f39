"""Losses of the paper (section 3.3).

* :func:`cross_entropy_label_smooth` - the softmax (identity classification) loss, with label
  smoothing: the target is ``(1 - eps)`` on the true identity and ``eps / K`` spread over all K.
* :func:`trihard_loss` - Eq. 6, batch-hard triplet loss on Euclidean distances:
  ``mean_a [max_{p: y_p = y_a} d(a, p) - min_{n: y_n != y_a} d(a, n) + m]_+``.
* :func:`e_trihard_loss` - Eq. 7, the enhanced TriHard: ``L_TriHard + beta * mean_a(d_ap / d_an)``;
  the ratio term pulls the hardest positive in *relative* to the hardest negative, which the
  margin alone ignores.
* :class:`ReidLoss` - Eq. 8, ``L = L_softmax + alpha * L_E-TriHard`` (alpha = 0.5, beta = 0.8 in the
  paper), plus the auxiliary branch's cross-entropy weighted by ``aux_weight`` (the paper adds the
  branch but gives no weight; 0.5 here, configurable).

Every anchor needs at least one positive and one negative in the batch, which the P x K sampler
guarantees (K >= 2, P >= 2); anchors without either are left out of the mean and a batch with no
valid anchor is an error.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

__all__ = [
    "cross_entropy_label_smooth",
    "pairwise_euclidean",
    "hardest_pairs",
    "trihard_loss",
    "e_trihard_loss",
    "LossConfig",
    "ReidLoss",
    "TRIPLET_KINDS",
]

TRIPLET_KINDS = ("none", "trihard", "e_trihard")


def cross_entropy_label_smooth(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Mean cross-entropy against ``(1 - eps) * one_hot + eps / K`` (``eps = 0``: plain cross-entropy)."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    log_probs = F.log_softmax(logits.float(), dim=1)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    smooth = -log_probs.mean(dim=1)
    return ((1.0 - epsilon) * nll + epsilon * smooth).mean()


def pairwise_euclidean(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``[B, B]`` Euclidean distances; clamped before the square root so gradients stay finite."""
    x = features.float()
    sq = x.pow(2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(eps).sqrt()


def hardest_pairs(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every anchor: the largest positive distance, the smallest negative distance, and a mask
    of the anchors that have both (the positive excludes the anchor itself)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    d_ap = torch.where(pos, dist, torch.full_like(dist, float("-inf"))).amax(dim=1)
    d_an = torch.where(neg, dist, torch.full_like(dist, float("inf"))).amin(dim=1)
    valid = pos.any(dim=1) & neg.any(dim=1)
    return d_ap, d_an, valid


def _valid_pairs(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be [B, D] and labels [B]; got {tuple(features.shape)} and {tuple(labels.shape)}")
    d_ap, d_an, valid = hardest_pairs(pairwise_euclidean(features), labels)
    if not bool(valid.any()):
        raise ValueError(
            "triplet loss: no anchor has both a positive and a negative in the batch "
            "(use the P x K sampler with P >= 2 identities and K >= 2 images each)"
        )
    return d_ap[valid], d_an[valid]


def trihard_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Eq. 6: ``mean [d_ap - d_an + margin]_+`` over anchors, hardest positive and negative per anchor."""
    d_ap, d_an = _valid_pairs(features, labels)
    return F.relu(d_ap - d_an + margin).mean()


def e_trihard_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, beta: float = 0.8
) -> torch.Tensor:
    """Eq. 7: ``L_TriHard + beta * mean(d_ap / d_an)``."""
    d_ap, d_an = _valid_pairs(features, labels)
    return F.relu(d_ap - d_an + margin).mean() + beta * (d_ap / d_an.clamp_min(1e-12)).mean()


@dataclasses.dataclass
class LossConfig:
    """Which losses and their weights (``loss.*`` in the training config).

    Attributes:
        label_smoothing: epsilon of the smoothed cross-entropy (0 = plain cross-entropy).
        aux_weight: weight of the auxiliary branch's cross-entropy (0 = ignore the branch).
        triplet: "none" (from-scratch recipe: cross-entropy only), "trihard" (Eq. 6) or
            "e_trihard" (Eq. 7, the paper's fine-tuning loss).
        triplet_start_epoch: epoch (0-based) from which the triplet term is added; the fine-tuning
            recipe trains with cross-entropy first (while the backbone is frozen), then Eq. 8.
        alpha, beta, margin: Eq. 8's alpha, Eq. 7's beta, Eq. 6's margin m.
        label_weight: scales all of the above together (0 = the labels teach nothing: distillation
            only, for a student that should copy its teachers rather than fit the training cameras).
    """

    label_smoothing: float = 0.1
    aux_weight: float = 0.5
    triplet: str = "none"
    triplet_start_epoch: int = 0
    alpha: float = 0.5
    beta: float = 0.8
    margin: float = 0.3
    label_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.triplet not in TRIPLET_KINDS:
            raise ValueError(f"loss.triplet must be one of {TRIPLET_KINDS}, got {self.triplet!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("aux_weight", "alpha", "beta", "margin", "label_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.triplet_start_epoch < 0:
            raise ValueError(f"loss.triplet_start_epoch must be >= 0, got {self.triplet_start_epoch}")


class ReidLoss:
    """Eq. 8 plus the auxiliary cross-entropy. Call with the model's ``TrainOutput`` and the labels.

    Returns ``(total, parts)`` where ``parts`` holds detached floats ``ce``, ``aux``, ``triplet``.
    """

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def uses_triplet(self, epoch: int) -> bool:
        return self.cfg.triplet != "none" and epoch >= self.cfg.triplet_start_epoch

    def __call__(self, output, labels: torch.Tensor, *, epoch: int = 0, mixed_with: torch.Tensor | None = None,
                 lam: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """``mixed_with``/``lam``: a mixed batch (image i is ``lam`` of itself and ``1 - lam`` of the image
        whose label is ``mixed_with[i]``): the cross-entropies take the mixed target
        ``lam * CE(labels) + (1 - lam) * CE(mixed_with)``, and the triplet term is left out (a mixed image
        is neither identity's positive)."""
        cfg = self.cfg

        def ce_of(logits):
            loss = cross_entropy_label_smooth(logits, labels, cfg.label_smoothing)
            if mixed_with is not None:
                loss = lam * loss + (1.0 - lam) * cross_entropy_label_smooth(logits, mixed_with, cfg.label_smoothing)
            return loss

        ce = ce_of(output.logits)
        total = ce
        parts = {"ce": float(ce.detach())}
        if output.aux_logits is not None and cfg.aux_weight > 0:
            aux = ce_of(output.aux_logits)
            total = total + cfg.aux_weight * aux
            parts["aux"] = float(aux.detach())
        if self.uses_triplet(epoch) and mixed_with is None:
            if cfg.triplet == "trihard":
                tri = trihard_loss(output.features, labels, cfg.margin)
            else:
                tri = e_trihard_loss(output.features, labels, cfg.margin, cfg.beta)
            total = total + cfg.alpha * tri
            parts["triplet"] = float(tri.detach())
        return (total if cfg.label_weight == 1.0 else cfg.label_weight * total), parts
