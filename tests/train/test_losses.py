"""Each loss against values worked out by hand on tiny batches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dslnet_edge.model import TrainOutput
from train.losses import (
    LossConfig,
    ReidLoss,
    cross_entropy_label_smooth,
    e_trihard_loss,
    hardest_pairs,
    pairwise_euclidean,
    trihard_loss,
)

# 1-D features 0, 2 (identity 0) and 1, 5 (identity 1). Distances:
#   d(0,2)=2 d(0,1)=1 d(0,5)=5 d(2,1)=1 d(2,5)=3 d(1,5)=4
# hardest positive / negative per anchor:
#   a=0: 2 / 1    a=2: 2 / 1    a=1: 4 / 1    a=5: 4 / 3
FEATURES = torch.tensor([[0.0], [2.0], [1.0], [5.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_hardest_pairs_by_hand():
    d_ap, d_an, valid = hardest_pairs(pairwise_euclidean(FEATURES), LABELS)
    assert d_ap.tolist() == pytest.approx([2, 2, 4, 4], abs=1e-5)
    assert d_an.tolist() == pytest.approx([1, 1, 1, 3], abs=1e-5)
    assert valid.all()


def test_trihard_eq6_by_hand():
    # [2-1+.3]+ , [2-1+.3]+ , [4-1+.3]+ , [4-3+.3]+  -> (1.3 + 1.3 + 3.3 + 1.3) / 4 = 1.8
    assert float(trihard_loss(FEATURES, LABELS, margin=0.3)) == pytest.approx(1.8, abs=1e-5)
    # margin 0 with a well separated batch is exactly zero
    separated = torch.tensor([[0.0], [0.5], [10.0], [10.5]])
    assert float(trihard_loss(separated, LABELS, margin=0.0)) == 0.0


def test_e_trihard_eq7_by_hand():
    # ratios d_ap / d_an: 2, 2, 4, 4/3 -> mean 7/3; 1.8 + 0.8 * 7/3
    expected = 1.8 + 0.8 * (2 + 2 + 4 + 4 / 3) / 4
    assert float(e_trihard_loss(FEATURES, LABELS, margin=0.3, beta=0.8)) == pytest.approx(expected, abs=1e-5)
    assert float(e_trihard_loss(FEATURES, LABELS, margin=0.3, beta=0.0)) == pytest.approx(1.8, abs=1e-5)


def test_two_dimensional_features_use_euclidean_distance():
    # a 3-4-5 rectangle: positives 3 apart, negatives at least 4 apart
    feats = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(trihard_loss(feats, labels, margin=1.5)) == pytest.approx(0.5, abs=1e-5)
    assert float(e_trihard_loss(feats, labels, margin=1.5, beta=0.8)) == pytest.approx(0.5 + 0.8 * 0.75, abs=1e-5)


def test_cross_entropy_label_smoothing_by_hand():
    logits = torch.tensor([[math.log(2.0), 0.0]])  # softmax = [2/3, 1/3]
    target = torch.tensor([0])
    nll = math.log(1.5)
    smooth = (math.log(1.5) + math.log(3.0)) / 2
    assert float(cross_entropy_label_smooth(logits, target, 0.0)) == pytest.approx(nll, abs=1e-6)
    assert float(cross_entropy_label_smooth(logits, target, 0.1)) == pytest.approx(0.9 * nll + 0.1 * smooth, abs=1e-6)
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy_label_smooth(logits, target, 1.0)


def test_total_loss_eq8_with_auxiliary_branch():
    logits = torch.tensor([[math.log(2.0), 0.0]] * 4)
    aux = torch.zeros(4, 2)  # uniform: CE = ln 2 whatever the smoothing
    labels = torch.tensor([0, 0, 1, 1])
    out = TrainOutput(logits, aux, FEATURES)
    cfg = LossConfig(label_smoothing=0.0, aux_weight=0.5, triplet="e_trihard", alpha=0.5, beta=0.8, margin=0.3,
                     triplet_start_epoch=2)
    loss = ReidLoss(cfg)
    ce = (2 * math.log(1.5) + 2 * math.log(3.0)) / 4  # two rows labelled 0, two labelled 1
    e_tri = 1.8 + 0.8 * (2 + 2 + 4 + 4 / 3) / 4
    total, parts = loss(out, labels, epoch=2)
    assert float(total) == pytest.approx(ce + 0.5 * math.log(2) + 0.5 * e_tri, abs=1e-5)
    assert parts["triplet"] == pytest.approx(e_tri, abs=1e-5) and parts["aux"] == pytest.approx(math.log(2))
    # before triplet_start_epoch: cross-entropy only ("CE then E-TriHard")
    total_early, parts_early = loss(out, labels, epoch=1)
    assert "triplet" not in parts_early
    assert float(total_early) == pytest.approx(ce + 0.5 * math.log(2), abs=1e-5)
    # no auxiliary logits (inference-style model): the term disappears
    total_no_aux, _ = ReidLoss(LossConfig(label_smoothing=0.0))(TrainOutput(logits, None, FEATURES), labels)
    assert float(total_no_aux) == pytest.approx(ce, abs=1e-6)
    # label_weight scales the whole label loss (0: distillation only); the parts are still reported
    half, parts_half = ReidLoss(dataclasses.replace(cfg, label_weight=0.5))(out, labels, epoch=2)
    assert float(half) == pytest.approx(0.5 * float(total), abs=1e-6) and parts_half == parts
    with pytest.raises(ValueError, match="label_weight"):
        LossConfig(label_weight=-1.0)


def test_gradients_stay_finite_with_identical_features():
    feats = torch.ones(4, 3, requires_grad=True)
    loss = e_trihard_loss(feats, LABELS)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()


@pytest.mark.parametrize(
    "features, labels, message",
    [
        (torch.zeros(4, 2), torch.tensor([0, 0, 0, 0]), "no anchor has both"),  # no negatives
        (torch.zeros(3, 2), torch.tensor([0, 1, 2]), "no anchor has both"),  # no positives
        (torch.zeros(4), torch.tensor([0, 0, 1, 1]), r"\[B, D\]"),
        (torch.zeros(4, 2), torch.tensor([0, 0, 1]), r"\[B, D\]"),
    ],
)
def test_triplet_bad_batches(features, labels, message):
    with pytest.raises(ValueError, match=message):
        trihard_loss(features, labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"triplet": "quadruplet"}, "loss.triplet"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"alpha": -1.0}, "loss.alpha"),
        ({"triplet_start_epoch": -1}, "triplet_start_epoch"),
    ],
)
def test_loss_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**kwargs)


def test_a_mixed_batch_takes_the_mixed_target_and_no_triplet_term():
    logits = torch.tensor([[math.log(2.0), 0.0]] * 4)  # p(class 0) = 2/3 on every row
    labels = torch.tensor([0, 0, 1, 1])
    partner_labels = torch.tensor([1, 1, 0, 0])  # each image mixed with one of the other identity
    out = TrainOutput(logits, torch.zeros(4, 2), FEATURES)
    cfg = LossConfig(label_smoothing=0.0, aux_weight=0.5, triplet="e_trihard")
    total, parts = ReidLoss(cfg)(out, labels, mixed_with=partner_labels, lam=0.7)
    own = (2 * math.log(1.5) + 2 * math.log(3.0)) / 4
    other = (2 * math.log(3.0) + 2 * math.log(1.5)) / 4
    assert parts["ce"] == pytest.approx(0.7 * own + 0.3 * other, abs=1e-6)
    assert "triplet" not in parts  # a mixed image is no identity's positive
    assert float(total) == pytest.approx(parts["ce"] + 0.5 * math.log(2), abs=1e-5)
    # lam 1 is the unmixed loss's cross-entropy
    _, unmixed = ReidLoss(cfg)(out, labels)
    _, lam_one = ReidLoss(cfg)(out, labels, mixed_with=partner_labels, lam=1.0)
    assert lam_one["ce"] == pytest.approx(unmixed["ce"], abs=1e-6)
