"""DSLNet as the paper specifies it: budgets, Table 1 shapes, CSS maths, variants, I/O."""

from __future__ import annotations

import pytest
import torch

from dslnet_edge.model import VARIANTS, DSLNetConfig, build_dslnet, build_variant
from dslnet_edge.model.dslnet import ChannelwiseScaleSelection, DenseConnectionGroup
from dslnet_edge.model.summary import count_macs, count_parameters, summarize
from dslnet_edge.spec import InputSpec

TINY = InputSpec(height=64, width=32)


@pytest.fixture(scope="module")
def full_summary():
    torch.manual_seed(0)
    return summarize(build_dslnet(num_classes=743))


def test_parameters_match_table1_within_5_percent(full_summary):
    assert abs(full_summary.parameters - 1.9e6) / 1.9e6 <= 0.05, full_summary.parameters


def test_multiply_adds_match_table1_within_10_percent(full_summary):
    assert abs(full_summary.macs - 825.0e6) / 825.0e6 <= 0.10, full_summary.macs


def test_table1_output_sizes(full_summary):
    shapes = full_summary.stage_shapes
    assert shapes["conv1"] == (1, 60, 128, 64)
    assert shapes["maxpool"] == (1, 60, 64, 32)
    assert shapes["stage1"] == (1, 252, 64, 32) and shapes["transition1"] == (1, 252, 32, 16)
    assert shapes["stage2"] == (1, 384, 32, 16) and shapes["transition2"] == (1, 384, 16, 8)
    assert shapes["stage3"] == (1, 516, 16, 8) and shapes["transition3"] == (1, 516, 16, 8)
    assert shapes["embedding"] == (1, 512)


def test_classifier_and_aux_branch_are_not_counted_as_inference_parameters():
    model = build_dslnet(num_classes=100)
    with_all = count_parameters(model, inference_only=False)
    classifiers = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("classifier", "aux_")))
    assert count_parameters(model) == with_all - classifiers
    assert not any(k.startswith(("classifier", "aux_")) for k in model.inference_state_dict())


def test_mac_counter_counts_a_known_layer():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2)  # 6*8*8 outputs x (4/2) x 9
    assert count_macs(conv, torch.zeros(3, 4, 8, 8)) == 6 * 8 * 8 * 2 * 9


def _css_by_loops(streams, w1, b1, w2, b2):
    """Eq. 2-5 written the slow obvious way: per stream, per channel."""
    fused = sum(streams)
    v = fused.mean(dim=(2, 3))
    logits = torch.stack([torch.relu(v @ w1[n].T + b1[n]) @ w2[n].T + b2[n] for n in range(len(streams))], dim=1)
    out = torch.zeros_like(streams[0])
    for c in range(streams[0].shape[1]):
        weights = torch.softmax(logits[:, :, c], dim=1)  # across streams, for channel c
        for n, s in enumerate(streams):
            out[:, c] += weights[:, n, None, None] * s[:, c]
    return out


def test_css_reference_matches_the_equations_written_out():
    torch.manual_seed(1)
    css = ChannelwiseScaleSelection(channels=20, num_streams=6, reduction=4)
    with torch.no_grad():
        css.fc1_bias.normal_()
        css.fc2_bias.normal_()
    streams = [torch.randn(3, 20, 5, 4) for _ in range(6)]
    expected = _css_by_loops(streams, css.fc1_weight, css.fc1_bias, css.fc2_weight, css.fc2_bias)
    torch.testing.assert_close(css(streams), expected, rtol=1e-5, atol=1e-5)


def test_css_softmax_sums_to_one_across_streams_for_every_channel():
    torch.manual_seed(2)
    css = ChannelwiseScaleSelection(channels=32, num_streams=6)
    weights = css.attention_weights([torch.randn(4, 32, 6, 3) * 5 for _ in range(6)])
    assert weights.shape == (4, 6, 32)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4, 32))
    assert (weights > 0).all()
    # A softmax across streams (not a sigmoid per stream): weights differ per channel and stream.
    assert weights.std(dim=1).mean() > 0


def test_css_selects_a_single_stream_when_its_logit_dominates():
    css = ChannelwiseScaleSelection(channels=8, num_streams=3, reduction=4)
    with torch.no_grad():
        css.fc2_weight.zero_()
        css.fc2_bias.zero_()
        css.fc2_bias[1] = 50.0  # stream 1 wins for every channel
    streams = [torch.full((1, 8, 2, 2), float(i + 1)) for i in range(3)]
    torch.testing.assert_close(css(streams), streams[1])


def test_dense_connections_follow_eq1():
    torch.manual_seed(3)
    dcg = DenseConnectionGroup(channels=8, num_layers=3, dense=True).eval()
    x0 = torch.randn(2, 8, 6, 4)
    streams = dcg(x0)
    layers = dcg.layers
    x1 = layers[0](x0)
    x2 = layers[1](x0 + x1)
    x3 = layers[2](x0 + x1 + x2)
    for got, want in zip(streams, (x1, x2, x3)):
        torch.testing.assert_close(got, want)
    chain = DenseConnectionGroup(channels=8, num_layers=3, dense=False).eval()
    chain.load_state_dict(dcg.state_dict())
    torch.testing.assert_close(chain(x0)[2], layers[2](layers[1](x1)))


def test_eval_returns_l2_normalized_embeddings_from_0_255_rgb():
    torch.manual_seed(4)
    model = build_dslnet(num_classes=5, spec=TINY).eval()
    with torch.no_grad():
        emb = model(torch.rand(3, 3, 64, 32) * 255)
    assert emb.shape == (3, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


def test_normalization_lives_inside_the_model():
    model = build_dslnet(num_classes=5, spec=TINY)
    mean = torch.tensor(TINY.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(TINY.std).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(model.mean, mean)
    torch.testing.assert_close(model.std, std)
    assert "mean" in model.state_dict() and "std" in model.state_dict()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_builds_and_trains_one_step(name):
    torch.manual_seed(5)
    model = build_variant(name, num_classes=4, spec=TINY).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(4, 3, 64, 32) * 255
    y = torch.tensor([0, 1, 2, 3])
    out = model(x)
    assert out.logits.shape == (4, 4) and out.aux_logits.shape == (4, 4) and out.features.shape == (4, 512)
    loss = torch.nn.functional.cross_entropy(out.logits, y) + torch.nn.functional.cross_entropy(out.aux_logits, y)
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed == len(before)


def test_variants_differ_in_structure():
    counts = {name: count_parameters(build_variant(name, num_classes=4)) for name in VARIANTS}
    assert counts["dslnet"] == counts["dslnet_no_dense"]  # dense connections add no weights
    assert counts["dslnet_no_attention"] < counts["dslnet_se"] < counts["dslnet"]
    assert counts["dslnet_se"] == counts["dslnet_osnet_gate"]  # one gate either way


def test_without_aux_branch_train_mode_returns_none_aux():
    model = build_dslnet(num_classes=3, aux_branch=False, spec=TINY).train()
    assert model(torch.rand(2, 3, 64, 32) * 255).aux_logits is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attention": "transformer"}, ValueError, "attention must be one of"),
        ({"num_classes": 0}, ValueError, "num_classes must be a positive integer"),
        ({"channels": (60, 252, 384)}, ValueError, "channels must be 4"),
    ],
)
def test_bad_builder_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        build_dslnet(**kwargs)


def test_unknown_variant_name_lists_the_choices():
    with pytest.raises(KeyError, match="choose from"):
        build_variant("dslnet_xl")


def test_config_round_trip():
    config = DSLNetConfig(num_classes=7, dense=False, attention="se")
    assert DSLNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown fields"):
        DSLNetConfig.from_dict({**config.to_dict(), "depth": 3})


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_smallest_input_is_derived_from_the_strides(name):
    """min_input_size() follows DOWNSAMPLING, which is what the built network really has."""
    from dslnet_edge.model.dslnet import DOWNSAMPLING, downsampling_layers, min_input_size

    smallest = min_input_size()
    model = build_variant(name, spec=InputSpec(height=smallest, width=smallest)).eval()
    assert downsampling_layers(model) == DOWNSAMPLING
    with torch.no_grad():
        assert model(torch.zeros(1, 3, smallest, smallest)).shape == (1, 512)
        with pytest.raises(RuntimeError, match="too small"):  # one pixel less breaks the last average pool
            model(torch.zeros(1, 3, smallest - 1, smallest))
    with pytest.raises(ValueError, match=f"input 7x3 is too small for DSLNet.*at least {smallest}"):
        build_variant(name, spec=InputSpec(height=7, width=3))
