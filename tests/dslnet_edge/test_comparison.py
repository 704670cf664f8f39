"""dslnet_edge.compare: the one parity function (metrics, verdicts, reports, bad inputs)."""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

import dslnet_edge.comparison as compare_module
from dslnet_edge.comparison import ComparisonResult, OutputComparison, Tolerances, compare, compare_outputs, cosine_rows


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_docstring_examples():
    failures, _ = doctest.testmod(compare_module, verbose=False)
    assert failures == 0


def test_compare_is_numpy_only():
    code = "import sys, dslnet_edge.comparison; assert not {'torch', 'onnxruntime', 'tensorrt'} & set(sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cosine_rows_matches_the_definition(rng):
    a, b = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
    expected = [np.dot(x.ravel(), y.ravel()) / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine_rows(a, b), expected, rtol=1e-12)


def test_cosine_rows_zero_vectors():
    a = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [1.0, 0.0, -1.0], rtol=0, atol=1e-12)


def test_identical_runners_pass_with_zero_difference(rng):
    x = _unit_rows(rng, 6, 16)
    result = compare({"a": lambda b: b.copy(), "b": lambda b: b.copy()}, x)
    assert result.passed
    c = result.comparisons[0]
    assert (c.max_abs, c.mean_abs) == (0.0, 0.0)
    assert c.min_cosine == pytest.approx(1.0)
    assert (c.reference, c.candidate, c.shape) == ("a", "b", (6, 16))


def test_metrics_are_the_expected_numbers(rng):
    x = _unit_rows(rng, 4, 8).astype(np.float64)
    noisy = x.copy()
    noisy[2] = -noisy[2]  # one sample flipped: cosine -1
    noisy[1, 3] += 0.5
    result = compare({"ref": lambda b: x, "cand": lambda b: noisy}, np.zeros((4, 1)))
    c = result.get("cand")
    assert c.worst_sample == 2
    assert c.min_cosine == pytest.approx(-1.0)
    assert c.max_abs == pytest.approx(np.abs(noisy - x).max())
    assert c.mean_cosine == pytest.approx(cosine_rows(x, noisy).mean())
    assert not result.passed
    assert any("min cosine" in f for f in c.failures)


@pytest.mark.parametrize(
    "tolerances, noise, passed",
    [
        (Tolerances(max_abs=1e-3, min_cosine=0.999), 1e-4, True),
        (Tolerances(max_abs=1e-5, min_cosine=None), 1e-4, False),
        (Tolerances(max_abs=None, min_cosine=0.999999999), 1e-2, False),
        (Tolerances(max_abs=None, min_cosine=None, mean_cosine=0.9), 1e-2, True),
    ],
)
def test_tolerances_decide_the_verdict(rng, tolerances, noise, passed):
    x = _unit_rows(rng, 8, 32)
    delta = rng.uniform(-noise, noise, size=x.shape).astype(np.float32)
    result = compare({"r": lambda b: b, "c": lambda b: b + delta}, x, tolerances=tolerances)
    assert result.passed is passed
    assert ("FAILED" in result.format()) is (not passed)


def test_batches_are_concatenated_and_every_runner_sees_the_same_inputs(rng):
    batches = [rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(2, 5)).astype(np.float32)]
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": []}

    def runner(name):
        def run(batch):
            seen[name].append(batch)
            return {"out": batch * 2, "sum": batch.sum(axis=1, keepdims=True)}

        return run

    result = compare({"a": runner("a"), "b": runner("b")}, iter(batches))
    assert result.num_samples == 5
    assert {c.output for c in result.comparisons} == {"out", "sum"}
    assert all(c.shape[0] == 5 for c in result.comparisons)
    for x, y in zip(seen["a"], seen["b"]):
        assert x is y


def test_three_runners_compare_against_the_named_reference(rng):
    x = _unit_rows(rng, 4, 8)
    result = compare(
        {"fp16": lambda b: b.astype(np.float16), "fp32": lambda b: b, "bad": lambda b: -b},
        x,
        reference="fp32",
        tolerances={"fp16": Tolerances(max_abs=1e-3, min_cosine=0.999), "bad": Tolerances()},
    )
    assert [c.candidate for c in result.comparisons] == ["fp16", "bad"]
    assert result.get("fp16").passed and not result.get("bad").passed
    assert not result.passed
    assert result.min_cosine == pytest.approx(-1.0)
    assert "bad/output" in result.summary()
    assert result.to_dict()["comparisons"][0]["passed"] is True


def test_nonfinite_outputs_fail(rng):
    x = _unit_rows(rng, 3, 4)
    y = x.copy()
    y[1, 2] = np.nan
    c = compare_outputs(x, y)
    assert not c.passed and c.nonfinite == 1
    assert "non-finite" in c.format()


@pytest.mark.parametrize(
    "runners, inputs, kwargs, message",
    [
        ({"a": lambda b: b}, np.ones((2, 2)), {}, "at least two runners"),
        ({"a": lambda b: b, "b": lambda b: b}, np.ones((2, 2)), {"reference": "c"}, "reference runner 'c'"),
        ({"a": lambda b: b, "b": lambda b: b}, [], {}, "non-empty input batch"),
        ({"a": lambda b: b, "b": lambda b: b[:, :1]}, np.ones((2, 2)), {}, "shape"),
        ({"a": lambda b: b, "b": lambda b: b[:1]}, np.ones((2, 2)), {}, "expected 2 samples"),
        ({"a": lambda b: b, "b": lambda b: {"x": b}}, np.ones((2, 2)), {}, "returns outputs"),
        ({"a": lambda b: b, "b": lambda b: "text"}, np.ones((2, 2)), {}, "returned a str"),
        ({"a": lambda b: b, "b": lambda b: b}, np.ones((2, 2)), {"tolerances": 0.1}, "tolerances must be"),
    ],
)
def test_bad_calls_raise_clear_errors(runners, inputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare(runners, inputs, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_abs": -1.0}, "max_abs"),
        ({"max_abs": float("nan")}, "max_abs"),
        ({"min_cosine": 1.5}, "min_cosine"),
        ({"mean_cosine": -2.0}, "mean_cosine"),
        ({"max_abs": None, "min_cosine": None, "mean_cosine": None}, "never fail"),
    ],
)
def test_invalid_tolerances(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tolerances(**kwargs)


def test_result_dataclasses_validate():
    with pytest.raises(ValueError, match="at least one comparison"):
        ComparisonResult((), 1)
    with pytest.raises(ValueError, match="worst_sample"):
        OutputComparison("o", "r", "c", (2, 3), 0.0, 0.0, 1.0, 1.0, 5, Tolerances())
    with pytest.raises(KeyError, match="no unique comparison"):
        compare({"a": lambda b: b, "b": lambda b: b}, np.ones((1, 2))).get("zzz")
