"""MixStyle: the statistics it mixes, training mode only, config checks (the loop with it on: test_loop.py)."""

from __future__ import annotations

import pytest
import torch

from dslnet_edge.model import build_variant
from dslnet_edge.spec import InputSpec
from train.config import ConfigError, ModelConfig
from train.mixstyle import MixStyle, attach_mixstyle


def test_mixed_statistics_lie_between_the_two_images_and_content_is_kept():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 6, 5) * torch.arange(1, 9.0).view(8, 1, 1, 1) + torch.arange(8.0).view(8, 1, 1, 1) * 10
    out = MixStyle(p=1.0, alpha=0.3)(x)
    mu_in, mu_out = x.mean(dim=(2, 3)), out.mean(dim=(2, 3))
    assert not torch.allclose(mu_in, mu_out)  # statistics moved
    lo, hi = mu_in.min(dim=0).values, mu_in.max(dim=0).values
    assert ((mu_out >= lo - 1e-4) & (mu_out <= hi + 1e-4)).all()  # ... to convex mixes of the batch's
    # content is kept: per image and channel the map is an increasing affine map of the input
    norm = lambda t: (t - t.mean(dim=(2, 3), keepdim=True)) / t.std(dim=(2, 3), keepdim=True)  # noqa: E731
    torch.testing.assert_close(norm(out), norm(x), atol=1e-4, rtol=1e-4)


def test_probability_zero_and_single_images_pass_through():
    x = torch.randn(4, 3, 5, 5)
    assert MixStyle(p=0.0)(x) is x
    assert MixStyle(p=1.0)(x[:1]) is not None and torch.equal(MixStyle(p=1.0)(x[:1]), x[:1])


def test_hooks_act_in_training_only_and_reject_unknown_layers():
    torch.manual_seed(0)
    model = build_variant("dslnet", num_classes=3, spec=InputSpec(height=32, width=16))
    x = torch.rand(4, 3, 32, 16) * 255
    model.eval()
    with torch.no_grad():
        before = model(x)
    handles = attach_mixstyle(model, MixStyle(p=1.0), ("stage1", "stage2"))
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # eval: untouched (export sees no MixStyle)
        model.train()
        train_out = model(x).features
        for h in handles:
            h.remove()
        torch.manual_seed(0)
        plain = model(x).features
    assert not torch.allclose(train_out, plain)
    with pytest.raises(ValueError, match="stage9"):
        attach_mixstyle(model, MixStyle(), ("stage9",))


@pytest.mark.parametrize("kwargs, match", [({"mixstyle": 1.5}, "model.mixstyle"),
                                           ({"mixstyle_alpha": 0.0}, "mixstyle_alpha")])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)
    with pytest.raises(ValueError, match="probability"):
        MixStyle(p=-0.1)

