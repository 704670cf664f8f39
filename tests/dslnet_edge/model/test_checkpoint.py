"""The input contract and the weights round-trip through a checkpoint; bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dslnet_edge.model import build_dslnet
from dslnet_edge.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from dslnet_edge.spec import InputSpec

SPEC = InputSpec(height=64, width=32, interpolation="area", mean=(0.5, 0.4, 0.3))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_dslnet(num_classes=6, attention="se", spec=SPEC)
    # Move BN statistics away from their defaults so the round trip checks buffers too.
    m.train()
    with torch.no_grad():
        m(torch.rand(4, 3, 64, 32) * 255)
    return m.eval()


def test_contract_and_weights_round_trip(tmp_path, model):
    path = save_checkpoint(tmp_path / "ckpt.pt", model, epoch=3, metrics={"rank1": 0.5})
    payload = load_checkpoint(path)
    assert InputSpec.from_dict(payload["input_spec"]) == model.spec
    assert payload["epoch"] == 3 and payload["metrics"] == {"rank1": 0.5}
    again = load_model(path)
    assert again.spec == model.spec and again.config == model.config and not again.training
    x = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_half_inference_only_checkpoint_is_small_and_close(tmp_path, model):
    full = save_checkpoint(tmp_path / "full.pt", model)
    half = save_checkpoint(tmp_path / "half.pt", model, inference_only=True, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    again = load_model(half)
    assert again.aux_fc is None
    x = torch.rand(2, 3, 64, 32) * 255
    with torch.no_grad():
        cosine = (again(x) * model(x)).sum(dim=1)
    assert cosine.min() > 0.999


def test_save_is_atomic_a_failed_save_keeps_the_old_file(tmp_path, model, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt.pt", model, epoch=1)
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_missing_truncated_foreign_and_directory_files(tmp_path, model):
    path = save_checkpoint(tmp_path / "ckpt.pt", model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    cases = {
        tmp_path / "missing.pt": "does not exist",
        tmp_path: "is a directory",
        truncated: "could not be read",
        garbage: "could not be read",
        foreign: "not a dslnet_edge checkpoint",
    }
    for bad, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(bad)
        assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="Unsupported operand"):  # the safe unpickler's finding, not its advice
        load_checkpoint(garbage)


def test_checkpoint_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "dslnet_edge.checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="was not loaded: it holds the Python object (builtins.)?print,") as info:
        load_checkpoint(path)
    _says_what_is_wrong_without_unsafe_advice(str(info.value))


def _says_what_is_wrong_without_unsafe_advice(message: str) -> None:
    assert "\n" not in message and "\x1b" not in message  # one line, no terminal colour codes
    assert "weights_only" not in message and "False" not in message and "add_safe_globals" not in message
    assert "running code" in message


def test_foreign_objects_are_named_without_recommending_the_unsafe_loader(tmp_path):
    """PyTorch's message advises retrying with weights_only=False (runs the file's code): never quoted."""
    path = tmp_path / "numpy_inside.pt"
    torch.save({"weights": np.zeros(3)}, path)  # a numpy array: not allowed by the safe loader
    with pytest.raises(CheckpointError, match=r"holds the Python object numpy\.\S*_reconstruct") as info:
        load_checkpoint(path)
    _says_what_is_wrong_without_unsafe_advice(str(info.value))


def test_mismatched_weights_are_reported(tmp_path, model):
    path = save_checkpoint(tmp_path / "ckpt.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["attention"] = "css"  # weights are for "se"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match the model config"):
        load_model(path)
