"""Parameter and multiply-add counts, per-stage output shapes (``python -m dslnet_edge.model``).

Multiply-adds are counted with forward hooks: a convolution costs
``output elements x in_channels/groups x kernel area``, a linear layer ``in x out`` per
sample, a CSS ``N x (C x R + R x C)`` per sample (its per-stream FCs). BatchNorm, pooling,
activations and element-wise sums are not counted (the convention of the paper's Table 1
and of OSNet).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from dslnet_edge.model.dslnet import ChannelwiseScaleSelection, DSLNet

__all__ = ["ModelSummary", "summarize", "count_macs", "count_parameters"]


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    parameters: int  # inference network (no classifiers, no auxiliary branch)
    parameters_with_classifier: int
    macs: int  # multiply-adds for one image at the spec's input size
    input_shape: tuple[int, int, int, int]
    stage_shapes: dict[str, tuple[int, ...]]
    config: dict[str, Any]
    spec: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["stage_shapes"] = {k: list(v) for k, v in self.stage_shapes.items()}
        return out

    def format(self) -> str:
        lines = [
            f"DSLNet  input {tuple(self.input_shape)}  attention={self.config['attention']}  "
            f"dense={self.config['dense']}",
            f"  parameters (inference, no classifier): {self.parameters / 1e6:.3f}M",
            f"  parameters (with classifiers, {self.config['num_classes']} classes): "
            f"{self.parameters_with_classifier / 1e6:.3f}M",
            f"  multiply-adds: {self.macs / 1e6:.1f}M",
            "  stage output shapes:",
        ]
        lines += [f"    {name:<12} {tuple(shape)}" for name, shape in self.stage_shapes.items()]
        lines.append("  hyper-parameters:")
        lines += [f"    {key:<17} {value}" for key, value in self.config.items()]
        return "\n".join(lines)


def count_parameters(model: nn.Module, *, inference_only: bool = True) -> int:
    if inference_only and isinstance(model, DSLNet):
        return sum(v.numel() for k, v in model.named_parameters() if k in model.inference_state_dict())
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass over ``x``, divided by the batch size."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    def css_hook(m: ChannelwiseScaleSelection, inp, _out) -> None:
        nonlocal total
        batch = inp[0][0].shape[0]
        total += batch * m.num_streams * 2 * m.channels * m.hidden

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, ChannelwiseScaleSelection):
            hooks.append(m.register_forward_hook(css_hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total // x.shape[0]


def summarize(model: DSLNet) -> ModelSummary:
    """Count an eval-mode forward at the model's InputSpec size (classifier not run)."""
    was_training = model.training
    model.eval()
    spec = model.spec
    x = torch.rand(1, 3, spec.height, spec.width) * 255
    try:
        macs = count_macs(model, x)
        shapes: dict[str, tuple[int, ...]] = {}
        with torch.no_grad():
            h = (x - model.mean) / model.std
            h = model.stem[0](h)
            shapes["conv1"] = tuple(h.shape)
            h = model.stem[1](h)
            shapes["maxpool"] = tuple(h.shape)
            for i in (1, 2, 3):
                h = getattr(model, f"stage{i}")(h)
                shapes[f"stage{i}"] = tuple(h.shape)
                h = getattr(model, f"transition{i}")(h)
                shapes[f"transition{i}"] = tuple(h.shape)
            shapes["embedding"] = tuple(model.forward_embedding(h).shape)
    finally:
        model.train(was_training)
    return ModelSummary(
        parameters=count_parameters(model),
        parameters_with_classifier=count_parameters(model, inference_only=False),
        macs=macs,
        input_shape=(1, 3, spec.height, spec.width),
        stage_shapes=shapes,
        config=model.config.to_dict(),
        spec=spec.to_dict(),
    )
