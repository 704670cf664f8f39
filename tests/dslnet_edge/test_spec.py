"""InputSpec: validation, JSON round-trip, forward-compatibility errors."""

from __future__ import annotations

import json

import pytest

from dslnet_edge.spec import SPEC_FORMAT_VERSION, InputSpec


def test_defaults_follow_table1():
    spec = InputSpec()
    assert (spec.height, spec.width, spec.feature_dim) == (256, 128, 512)
    assert spec.input_shape == (3, 256, 128)
    assert spec.channel_order == "RGB" and spec.normalization_in_model


def test_json_round_trip_preserves_every_field():
    spec = InputSpec(height=128, width=64, channel_order="BGR", mean=(0.5, 0.5, 0.5), precision="fp16")
    again = InputSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(spec.to_json())["format_version"] == SPEC_FORMAT_VERSION


def test_lists_from_json_become_tuples_and_spec_is_hashable():
    spec = InputSpec.from_dict({"mean": [0.1, 0.2, 0.3], "pixel_range": [0, 1]})
    assert spec.mean == (0.1, 0.2, 0.3) and spec.pixel_range == (0.0, 1.0)
    assert hash(spec) == hash(InputSpec.from_dict(spec.to_dict()))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"height": 0}, "height must be a positive integer"),
        ({"width": -4}, "width must be a positive integer"),
        ({"feature_dim": 2.5}, "feature_dim must be a positive integer"),
        ({"height": True}, "height must be a positive integer"),
        ({"channel_order": "RGBA"}, "channel_order must be one of"),
        ({"interpolation": "lanczos9"}, "interpolation must be one of"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"pixel_range": (255, 0)}, "pixel_range"),
        ({"mean": (0.5, 0.5)}, "mean must be 3 finite numbers"),
        ({"std": (0.2, 0.0, 0.2)}, "std must be positive"),
        ({"std": (0.2, float("nan"), 0.2)}, "std must be 3 finite numbers"),
        ({"l2_normalized": "yes"}, "l2_normalized must be a bool"),
    ],
)
def test_invalid_fields_are_rejected_with_the_field_name(changes, message):
    with pytest.raises(ValueError, match=message):
        InputSpec(**changes)


def test_replace_validates_again():
    with pytest.raises(ValueError, match="height"):
        InputSpec().replace(height=-1)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2, 3]", "must be a mapping"),
        (json.dumps({"height": 256, "colour": "red"}), "unknown fields"),
        (json.dumps({"format_version": SPEC_FORMAT_VERSION + 1}), "newer than this dslnet_edge"),
    ],
)
def test_bad_serialised_specs_are_refused(payload, message):
    with pytest.raises(ValueError, match=message):
        InputSpec.from_json(payload)
