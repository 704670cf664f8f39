"""The one parity function: run several backends on the same inputs and compare their outputs.

Modelled on Polygraphy's ``Comparator``: every *runner* is a callable that takes one input batch
(``numpy`` array) and returns its output (an array, or a mapping of output name -> array). All
runners see exactly the same batches; every other runner is compared with the *reference*
runner (the first one unless named), output by output, and the result is a validated
:class:`ComparisonResult` that knows whether it passed its :class:`Tolerances` and can
``format()`` itself for a report.

Used by the export parity report (ONNX Runtime vs PyTorch), the FP16 check, the
plugin-vs-plain check, the runtime's backend-agreement tests and INT8 calibration. NumPy only:
no torch, no ONNX Runtime here (the callers bring their runners).

Example::

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> result = compare({"a": lambda b: b, "b": lambda b: b * 1.00001}, x)
    >>> result.passed, round(result.comparisons[0].min_cosine, 6)
    (True, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "Tolerances",
    "OutputComparison",
    "ComparisonResult",
    "compare",
    "compare_outputs",
    "cosine_rows",
]

Output = np.ndarray | Mapping[str, np.ndarray]
Runner = Callable[[np.ndarray], Output]

#: Name given to a runner's output when it returns a bare array.
DEFAULT_OUTPUT = "output"


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Pass/fail thresholds of one comparison; ``None`` switches a check off.

    Attributes:
        max_abs: largest allowed element-wise ``|candidate - reference|``.
        min_cosine: smallest allowed per-sample cosine similarity (rows = samples).
        mean_cosine: smallest allowed mean of the per-sample cosines.
    """

    max_abs: float | None = 1e-4
    min_cosine: float | None = 0.9999
    mean_cosine: float | None = None

    def __post_init__(self) -> None:
        if self.max_abs is not None and not (math.isfinite(self.max_abs) and self.max_abs >= 0):
            raise ValueError(f"Tolerances.max_abs must be a finite number >= 0 or None, got {self.max_abs!r}")
        for name in ("min_cosine", "mean_cosine"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and -1.0 <= value <= 1.0):
                raise ValueError(f"Tolerances.{name} must be in [-1, 1] or None, got {value!r}")
        if self.max_abs is None and self.min_cosine is None and self.mean_cosine is None:
            raise ValueError("Tolerances with every check switched off can never fail; set at least one")


@dataclasses.dataclass(frozen=True)
class OutputComparison:
    """One output of one candidate runner against the reference runner.

    ``min_cosine``/``mean_cosine`` are over samples (the first axis; the other axes are
    flattened). ``worst_sample`` is the index of the sample with the lowest cosine.
    Non-finite values in either output make every metric ``nan`` and the comparison fail.
    """

    output: str
    reference: str
    candidate: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    min_cosine: float
    mean_cosine: float
    worst_sample: int
    tolerances: Tolerances
    nonfinite: int = 0

    def __post_init__(self) -> None:
        if not self.shape or self.shape[0] < 1:
            raise ValueError(f"OutputComparison.shape must have a sample axis with >= 1 samples, got {self.shape!r}")
        if not 0 <= self.worst_sample < self.shape[0]:
            raise ValueError(f"OutputComparison.worst_sample {self.worst_sample} is outside 0..{self.shape[0] - 1}")
        if self.nonfinite < 0:
            raise ValueError(f"OutputComparison.nonfinite must be >= 0, got {self.nonfinite}")

    @property
    def failures(self) -> list[str]:
        """Human-readable reasons this comparison fails (empty when it passes)."""
        tol, out = self.tolerances, []
        if self.nonfinite:
            out.append(f"{self.nonfinite} non-finite values")
        if tol.max_abs is not None and not self.max_abs <= tol.max_abs:
            out.append(f"max|diff| {self.max_abs:.3g} > {tol.max_abs:.3g}")
        if tol.min_cosine is not None and not self.min_cosine >= tol.min_cosine:
            out.append(f"min cosine {self.min_cosine:.8f} < {tol.min_cosine:.8f} (sample {self.worst_sample})")
        if tol.mean_cosine is not None and not self.mean_cosine >= tol.mean_cosine:
            out.append(f"mean cosine {self.mean_cosine:.8f} < {tol.mean_cosine:.8f}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def format(self) -> str:
        tol = self.tolerances
        bound = (lambda op, v, f: f" ({op} {v:{f}})" if v is not None else "")  # noqa: E731
        status = "ok" if self.passed else "FAILED: " + "; ".join(self.failures)
        return (
            f"{self.candidate} vs {self.reference} [{self.output} {list(self.shape)}]: "
            f"max|diff| {self.max_abs:.3g}{bound('<=', tol.max_abs, '.3g')}, mean|diff| {self.mean_abs:.3g}, "
            f"cosine min {self.min_cosine:.8f}{bound('>=', tol.min_cosine, '.8f')} "
            f"mean {self.mean_cosine:.8f}{bound('>=', tol.mean_cosine, '.8f')} -> {status}"
        )


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
    """All comparisons of one :func:`compare` run."""

    comparisons: tuple[OutputComparison, ...]
    num_samples: int
    label: str = "parity"

    def __post_init__(self) -> None:
        object.__setattr__(self, "comparisons", tuple(self.comparisons))
        if not self.comparisons:
            raise ValueError("ComparisonResult needs at least one comparison")
        if self.num_samples < 1:
            raise ValueError(f"ComparisonResult.num_samples must be >= 1, got {self.num_samples}")

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def max_abs(self) -> float:
        """Worst max|diff| over all comparisons."""
        return max(c.max_abs for c in self.comparisons)

    @property
    def min_cosine(self) -> float:
        """Worst per-sample cosine over all comparisons."""
        return min(c.min_cosine for c in self.comparisons)

    @property
    def mean_cosine(self) -> float:
        """Lowest mean cosine over all comparisons."""
        return min(c.mean_cosine for c in self.comparisons)

    def get(self, candidate: str, output: str | None = None) -> OutputComparison:
        """The comparison of ``candidate`` (and ``output``, when the runners have several)."""
        found = [c for c in self.comparisons if c.candidate == candidate and (output is None or c.output == output)]
        if len(found) != 1:
            known = sorted({(c.candidate, c.output) for c in self.comparisons})
            raise KeyError(f"no unique comparison for candidate={candidate!r} output={output!r}; have {known}")
        return found[0]

    def summary(self) -> str:
        """One line: the verdict and the worst numbers (for CLI errors and logs)."""
        verdict = "passed" if self.passed else "FAILED"
        line = (
            f"{self.label} {verdict} on {self.num_samples} samples: max|diff| {self.max_abs:.3g}, "
            f"min cosine {self.min_cosine:.8f}, mean cosine {self.mean_cosine:.8f}"
        )
        failing = [f"{c.candidate}/{c.output}: {'; '.join(c.failures)}" for c in self.comparisons if not c.passed]
        return line + (f" ({' | '.join(failing)})" if failing else "")

    def format(self) -> str:
        """A readable multi-line report."""
        lines = [f"{self.label}: {'PASSED' if self.passed else 'FAILED'} ({self.num_samples} samples)"]
        lines += ["  " + c.format() for c in self.comparisons]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-safe dict (for sidecars and reports)."""
        return {
            "label": self.label,
            "passed": self.passed,
            "num_samples": self.num_samples,
            "comparisons": [
                {
                    **{k: v for k, v in dataclasses.asdict(c).items() if k != "tolerances"},
                    "shape": list(c.shape),
                    "tolerances": dataclasses.asdict(c.tolerances),
                    "passed": c.passed,
                }
                for c in self.comparisons
            ],
        }


# ---------------------------------------------------------------------------------------------
# Pure metrics
# ---------------------------------------------------------------------------------------------
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cosine similarity of two ``[N, ...]`` arrays (float64 ``[N]``).

    Two all-zero samples count as identical (1.0); a zero sample against a non-zero one as 0.0.

    >>> cosine_rows(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]])).tolist()
    [1.0, 1.0]
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, dot / np.maximum(na * nb, np.finfo(np.float64).tiny))
    return np.clip(cos, -1.0, 1.0)


def compare_outputs(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    tolerances: Tolerances = Tolerances(),
    output: str = DEFAULT_OUTPUT,
    reference_name: str = "reference",
    candidate_name: str = "candidate",
) -> OutputComparison:
    """Compare two arrays of the same shape ``[N, ...]`` (samples on the first axis)."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    if ref.shape != cand.shape:
        raise ValueError(
            f"output {output!r}: {candidate_name} has shape {cand.shape}, {reference_name} has {ref.shape}; "
            "they must match to be compared"
        )
    if ref.ndim == 0 or ref.shape[0] == 0:
        raise ValueError(f"output {output!r}: expected a non-empty [N, ...] array, got shape {ref.shape}")
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    nonfinite = int((~np.isfinite(ref64)).sum() + (~np.isfinite(cand64)).sum())
    if nonfinite:
        nan = float("nan")
        return OutputComparison(output, reference_name, candidate_name, ref.shape, nan, nan, nan, nan, 0, tolerances, nonfinite)
    diff = np.abs(cand64 - ref64)
    cos = cosine_rows(ref64, cand64)
    worst = int(np.argmin(cos))
    return OutputComparison(
        output=output,
        reference=reference_name,
        candidate=candidate_name,
        shape=tuple(ref.shape),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        min_cosine=float(cos[worst]),
        mean_cosine=float(cos.mean()),
        worst_sample=worst,
        tolerances=tolerances,
    )


# ---------------------------------------------------------------------------------------------
# The comparator
# ---------------------------------------------------------------------------------------------
def compare(
    runners: Mapping[str, Runner],
    inputs: np.ndarray | Iterable[np.ndarray],
    *,
    reference: str | None = None,
    tolerances: Tolerances | Mapping[str, Tolerances] = Tolerances(),
    label: str = "parity",
) -> ComparisonResult:
    """Run every runner on the same input batches and compare each with the reference.

    Args:
        runners: name -> callable taking one batch and returning an array or a mapping of
            output name -> array (every runner must return the same output names).
        inputs: one batch (an array whose first axis is the sample axis) or an iterable of
            batches; outputs are concatenated over batches before comparing.
        reference: the runner the others are compared with (default: the first).
        tolerances: one :class:`Tolerances` for every comparison, or a mapping candidate runner
            name -> Tolerances (runners missing from it use the defaults).
        label: a name for the report ("fp16 vs fp32", ...).

    Raises:
        ValueError: fewer than two runners, no inputs, an unknown reference, or outputs that
            differ in names or shapes (these are errors, not failed comparisons).
    """
    if len(runners) < 2:
        raise ValueError(f"compare needs at least two runners, got {list(runners)}")
    names = list(runners)
    reference = names[0] if reference is None else reference
    if reference not in runners:
        raise ValueError(f"reference runner {reference!r} is not one of {names}")
    batches = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    if not batches or any(len(np.asarray(b)) == 0 for b in batches):
        raise ValueError("compare needs at least one non-empty input batch")

    collected = {name: _run_all(name, runner, batches) for name, runner in runners.items()}
    ref_outputs = collected[reference]
    comparisons = []
    for name in names:
        if name == reference:
            continue
        outputs = collected[name]
        if set(outputs) != set(ref_outputs):
            raise ValueError(f"runner {name!r} returns outputs {sorted(outputs)}, {reference!r} returns {sorted(ref_outputs)}")
        tol = _tolerances_for(tolerances, name)
        for output in ref_outputs:
            comparisons.append(
                compare_outputs(
                    ref_outputs[output],
                    outputs[output],
                    tolerances=tol,
                    output=output,
                    reference_name=reference,
                    candidate_name=name,
                )
            )
    num_samples = sum(len(b) for b in batches)
    return ComparisonResult(tuple(comparisons), num_samples, label)


def _run_all(name: str, runner: Runner, batches: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    per_output: dict[str, list[np.ndarray]] = {}
    for i, batch in enumerate(batches):
        result = runner(batch)
        if isinstance(result, Mapping):
            items = dict(result)
        elif isinstance(result, (np.ndarray, np.generic)) or hasattr(result, "__array__"):
            items = {DEFAULT_OUTPUT: result}
        else:
            raise ValueError(f"runner {name!r} returned a {type(result).__name__} for batch {i}; expected an array or a mapping")
        for key, value in items.items():
            value = np.asarray(value)
            if value.ndim == 0 or len(value) != len(batch):
                raise ValueError(
                    f"runner {name!r} output {key!r} for batch {i} has shape {value.shape}; "
                    f"expected {len(batch)} samples on the first axis"
                )
            per_output.setdefault(key, []).append(value)
        if i and set(items) != set(per_output):
            raise ValueError(f"runner {name!r} returned different outputs for batch {i}: {sorted(items)}")
    return {k: np.concatenate(v, axis=0) for k, v in per_output.items()}


def _tolerances_for(tolerances: Tolerances | Mapping[str, Tolerances], name: str) -> Tolerances:
    if isinstance(tolerances, Tolerances):
        return tolerances
    if isinstance(tolerances, Mapping):
        value = tolerances.get(name, Tolerances())
        if not isinstance(value, Tolerances):
            raise ValueError(f"tolerances[{name!r}] must be a Tolerances, got {type(value).__name__}")
        return value
    raise ValueError(f"tolerances must be a Tolerances or a mapping of runner name -> Tolerances, got {type(tolerances).__name__}")
