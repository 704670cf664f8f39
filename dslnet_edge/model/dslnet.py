"""DSLNet: Dense-Scale Feature Learning Network for person re-identification.

Paper: Wang, Fan, Guo, Zhao, Zhang, Li, Gong, "Dense-Scale Feature Learning in Person
Re-Identification" (ACCV 2020). Sections 3.1-3.4 and Table 1 define the network:

* **DSL block** = Dense Connection Group (DCG) + Channel-wise Scale Selection (CSS) inside a
  residual block.
* **DCG** (Eq. 1): ``L = 6`` depth-wise separable convolutions in series, densely connected,
  ``x_i = H_i(x_0 + x_1 + ... + x_{i-1})``. Every ``x_i`` (i = 1..6) is a CSS stream.
* **CSS** (Eq. 2-5): ``F = sum_n s_n``; ``V = GAP(F)``; one two-layer FC sub-network per
  stream ``I_n = phi_n(V)``; for every channel a softmax *across the streams*
  ``w[:, c] = softmax_n(I[:, c])``; output ``D = sum_n w_n * s_n``.
* **Network** (Table 1): 7x7/2 conv stem to 60 channels + 3x3/2 max-pool; three stages of two
  DSL blocks with 252, 384, 516 output channels; after stages 1 and 2 a 1x1 conv and a 2x2/2
  average pool, after stage 3 a 1x1 conv; global average pool; FC 516 -> 512 (BN, ReLU).
  During training an auxiliary branch on stage 2 and the identity classifiers are added.

Choices the paper leaves open, and why
--------------------------------------
The paper fixes the outer network but not the inside of a DSL block. The choices below are
the OSNet-style ones (DSLNet is presented as an OSNet successor and compares against it), and
they are the ones that reproduce Table 1's budget; any of the alternatives tried moves the
count well away from it:

1. **Bottleneck width**: a 1x1 conv (BN, ReLU) reduces ``in -> out/4`` before the DCG and a 1x1
   conv (BN) expands ``out/4 -> out`` after the CSS; a projection shortcut (1x1 conv + BN) is
   used when the channel count changes. Output = ReLU(expand + shortcut).
2. **Depth-wise separable layer** ``H_i``: 1x1 conv (no BN) then 3x3 depth-wise conv, BN, ReLU
   (OSNet's "lite 3x3").
3. **Streams**: all six DCG outputs ``x_1 .. x_6`` feed the CSS (N = 6).
4. **V is copied, not split**: each of the six sub-networks sees the whole pooled vector V
   (splitting V into N groups would leave a stream's weights for channel c blind to most of
   the fused features, and makes C/N non-integral for 63 and 129 channels).
5. **FC reduction 16**: ``phi_n = FC(C -> C/16) -> ReLU -> FC(C/16 -> C)``, with biases.

The arithmetic (256x128 input, classifier excluded; multiply-adds counted as conv output
elements x in/groups x kernel area, linear in x out, the CSS FCs likewise; BN, pooling and
element-wise sums not counted) gives **1.95M parameters** (Table 1: 1.9M) and **825.0M
multiply-adds** (Table 1: 825.0M). ``python -m dslnet_edge.model`` prints both, per stage.

The per-block bottleneck widths are 63 (stage 1), 96 (stage 2) and 129 (stage 3); the CSS
hidden widths are 63 // 16 = 3, 96 // 16 = 6 and 129 // 16 = 8.

Normalization lives inside the model (``mean``/``std`` buffers, in 0-255 units), so the network
takes RGB pixels in 0-255 and every exported graph carries its own normalization.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dslnet_edge.spec import InputSpec

__all__ = [
    "DSLNet",
    "DSLNetConfig",
    "DSLBlock",
    "DenseConnectionGroup",
    "ChannelwiseScaleSelection",
    "TrainOutput",
    "css_reference",
    "build_dslnet",
    "ATTENTIONS",
    "DOWNSAMPLING",
    "min_input_size",
    "downsampling_layers",
]

Attention = Literal["css", "se", "osnet", "none"]
ATTENTIONS: tuple[str, ...] = ("css", "se", "osnet", "none")

#: The layers that shrink the feature map, in forward order, as (kernel, stride, padding): the
#: stem's 7x7/2 conv and 3x3/2 max-pool, then the 2x2/2 average pools of transitions 1 and 2
#: (total stride 16). ``downsampling_layers(model)`` reads the same list off a built network.
DOWNSAMPLING: tuple[tuple[int, int, int], ...] = ((7, 2, 3), (3, 2, 1), (2, 2, 0), (2, 2, 0))


def min_input_size(layers: Sequence[tuple[int, int, int]] = DOWNSAMPLING) -> int:
    """The smallest input height/width for which every down-sampling layer still has an output.

    Each layer maps a side of ``n`` pixels to ``floor((n + 2 * padding - kernel) / stride) + 1``.

    >>> min_input_size()
    13
    """
    size = 1
    while True:
        n = size
        for kernel, stride, padding in layers:
            n = (n + 2 * padding - kernel) // stride + 1
            if n < 1:
                break
        else:
            return size
        size += 1


def downsampling_layers(model: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """(kernel, stride, padding) of every layer with a stride above 1, in module order."""

    def first(value) -> int:
        return value[0] if isinstance(value, tuple) else int(value)

    found = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and first(module.stride) > 1:
            found.append((first(module.kernel_size), first(module.stride), first(module.padding)))
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# The CSS maths, once. The module below, the Triton kernel, the ONNX reference op and the
# tests all compare against this function.
# ---------------------------------------------------------------------------------------------
def css_reference(
    streams: Sequence[torch.Tensor],
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
) -> torch.Tensor:
    """Channel-wise Scale Selection (paper Eq. 2-5).

    Args:
        streams: N stream tensors ``s_n``, each ``[B, C, H, W]``.
        w1, b1: first FC of every sub-network, ``[N, R, C]`` and ``[N, R]``.
        w2, b2: second FC of every sub-network, ``[N, C, R]`` and ``[N, C]``.

    Returns:
        ``D = sum_n softmax_n(phi_n(GAP(sum_n s_n))) * s_n``, ``[B, C, H, W]``.
    """
    fused = streams[0]
    for s in streams[1:]:
        fused = fused + s  # Eq. 2
    v = fused.mean(dim=(2, 3))  # Eq. 3: [B, C]
    # Eq. 4, all N sub-networks at once: [B, 1, 1, C] @ [N, C, R] -> [B, N, 1, R]
    hidden = torch.relu(torch.matmul(v[:, None, None, :], w1.transpose(1, 2)) + b1[:, None, :])
    logits = (torch.matmul(hidden, w2.transpose(1, 2)) + b2[:, None, :]).squeeze(2)  # [B, N, C]
    weights = torch.softmax(logits, dim=1)  # softmax across streams, per channel
    out = weights[:, 0, :, None, None] * streams[0]  # Eq. 5
    for n in range(1, len(streams)):
        out = out + weights[:, n, :, None, None] * streams[n]
    return out


# ---------------------------------------------------------------------------------------------
# Small blocks
# ---------------------------------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BN -> ReLU (``relu=False`` leaves the ReLU out)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, *, groups: int = 1, relu: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )


class LiteConv3x3(nn.Module):
    """Depth-wise separable layer H_i: 1x1 conv, then 3x3 depth-wise conv -> BN -> ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.depthwise(self.pointwise(x))))


class DenseConnectionGroup(nn.Module):
    """DCG (Eq. 1): ``x_i = H_i(x_0 + ... + x_{i-1})``; returns the streams ``[x_1 .. x_L]``.

    With ``dense=False`` (the ablation of Table 4) the layers are a plain chain
    ``x_i = H_i(x_{i-1})`` and still all L outputs are streams.
    """

    def __init__(self, channels: int, num_layers: int = 6, *, dense: bool = True):
        super().__init__()
        self.dense = dense
        self.layers = nn.ModuleList(LiteConv3x3(channels) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> list[torch.Tensor]:
        streams: list[torch.Tensor] = []
        acc = x0
        for layer in self.layers:
            x = layer(acc)
            streams.append(x)
            acc = acc + x if self.dense else x
        return streams


class ChannelwiseScaleSelection(nn.Module):
    """CSS (Eq. 2-5): per-stream FC sub-networks, softmax across streams per channel.

    The N sub-networks' weights are stored stacked (``fc1_weight [N, R, C]`` ...), which is
    how :func:`css_reference`, the fused kernel and the ONNX plugin node take them.
    """

    def __init__(self, channels: int, num_streams: int = 6, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.num_streams, self.channels, self.hidden = num_streams, channels, hidden
        self.fc1_weight = nn.Parameter(torch.empty(num_streams, hidden, channels))
        self.fc1_bias = nn.Parameter(torch.zeros(num_streams, hidden))
        self.fc2_weight = nn.Parameter(torch.empty(num_streams, channels, hidden))
        self.fc2_bias = nn.Parameter(torch.zeros(num_streams, channels))
        for w in (self.fc1_weight, self.fc2_weight):  # nn.Linear's default init, per stream
            nn.init.kaiming_uniform_(w, a=5**0.5)

    def forward(self, streams: Sequence[torch.Tensor]) -> torch.Tensor:
        return css_reference(streams, self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_bias)

    def attention_weights(self, streams: Sequence[torch.Tensor]) -> torch.Tensor:
        """The per-channel stream weights ``[B, N, C]`` (each column sums to one)."""
        v = torch.stack(list(streams)).sum(0).mean(dim=(2, 3))
        hidden = torch.relu(torch.einsum("bc,nrc->bnr", v, self.fc1_weight) + self.fc1_bias)
        return torch.softmax(torch.einsum("bnr,ncr->bnc", hidden, self.fc2_weight) + self.fc2_bias, dim=1)

    def extra_repr(self) -> str:
        return f"streams={self.num_streams}, channels={self.channels}, hidden={self.hidden}"


class ChannelGate(nn.Module):
    """SE-style sigmoid gate: ``x * sigmoid(FC(ReLU(FC(GAP(x)))))``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class SEAttention(nn.Module):
    """Ablation "SENet attention" (Table 5): one SE gate on the fused streams."""

    def __init__(self, channels: int, num_streams: int = 6, reduction: int = 16):
        super().__init__()
        self.gate = ChannelGate(channels, reduction)

    def forward(self, streams: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.gate(_sum(streams))


class SharedGateAttention(nn.Module):
    """Ablation "OSNet attention" (Table 5): one gate, shared by all streams, per stream."""

    def __init__(self, channels: int, num_streams: int = 6, reduction: int = 16):
        super().__init__()
        self.gate = ChannelGate(channels, reduction)

    def forward(self, streams: Sequence[torch.Tensor]) -> torch.Tensor:
        return _sum([self.gate(s) for s in streams])


class StreamSum(nn.Module):
    """Ablation "baseline" (Table 5): the streams summed, no attention."""

    def __init__(self, channels: int, num_streams: int = 6, reduction: int = 16):
        super().__init__()

    def forward(self, streams: Sequence[torch.Tensor]) -> torch.Tensor:
        return _sum(streams)


def _sum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out


_ATTENTION_MODULES: dict[str, type[nn.Module]] = {
    "css": ChannelwiseScaleSelection,
    "se": SEAttention,
    "osnet": SharedGateAttention,
    "none": StreamSum,
}


class DSLBlock(nn.Module):
    """Residual DSL block: 1x1 reduce -> DCG -> attention (CSS) -> 1x1 expand, + shortcut."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        bottleneck_ratio: int = 4,
        num_layers: int = 6,
        reduction: int = 16,
        dense: bool = True,
        attention: Attention = "css",
    ):
        super().__init__()
        mid = cout // bottleneck_ratio
        self.reduce = ConvBNReLU(cin, mid, 1)
        self.dcg = DenseConnectionGroup(mid, num_layers, dense=dense)
        self.attention = _ATTENTION_MODULES[attention](mid, num_layers, reduction)
        self.expand = ConvBNReLU(mid, cout, 1, relu=False)
        self.shortcut = ConvBNReLU(cin, cout, 1, relu=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.attention(self.dcg(self.reduce(x))))
        return torch.relu(out + self.shortcut(x))


class TrainOutput(NamedTuple):
    """What DSLNet returns in train mode."""

    logits: torch.Tensor  # [B, num_classes]
    aux_logits: torch.Tensor | None  # [B, num_classes] from the stage-2 branch, or None
    features: torch.Tensor  # [B, feature_dim], the embedding before L2 normalization


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DSLNetConfig:
    """Architecture hyper-parameters; saved in every checkpoint next to the InputSpec."""

    num_classes: int = 1000
    channels: tuple[int, int, int, int] = (60, 252, 384, 516)  # stem, stage 1, 2, 3
    blocks_per_stage: int = 2
    num_layers: int = 6  # depth-wise separable layers (= CSS streams) per DCG
    bottleneck_ratio: int = 4
    reduction: int = 16  # CSS / gate FC reduction
    feature_dim: int = 512
    dense: bool = True
    attention: str = "css"
    aux_branch: bool = True
    # The embedding head is FC -> BN -> ReLU in Table 1. Without the ReLU (``False``) the embedding
    # can take negative values, which distillation from teachers with signed embeddings needs (a
    # cosine to a half-negative teacher vector cannot be reached through a ReLU).
    embedding_relu: bool = True
    # BNNeck (Luo et al., 2019): a training-only BatchNorm (no bias) between the embedding and the
    # identity classifiers; the triplet and distillation losses see the embedding, the classifier its
    # normalized copy. Never exported.
    bnneck: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if len(self.channels) != 4 or min(self.channels) <= 0:
            raise ValueError(f"channels must be 4 positive integers (stem, stage1-3), got {self.channels!r}")
        for name in ("num_classes", "blocks_per_stage", "num_layers", "bottleneck_ratio", "reduction", "feature_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> DSLNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DSLNetConfig has unknown fields {unknown}")
        return cls(**data)


class DSLNet(nn.Module):
    """DSLNet (Table 1). Eval mode returns the L2-normalized embedding ``[B, feature_dim]``.

    Input: ``[B, 3, H, W]`` float RGB pixels in 0-255 (normalized inside, see ``mean``/``std``).
    Train mode returns :class:`TrainOutput` (logits, auxiliary logits, raw features).
    """

    def __init__(self, config: DSLNetConfig = DSLNetConfig(), spec: InputSpec | None = None):
        super().__init__()
        self.config = config
        self.spec = (spec or InputSpec()).replace(feature_dim=config.feature_dim)
        smallest = min_input_size()
        if min(self.spec.height, self.spec.width) < smallest:
            raise ValueError(
                f"input {self.spec.height}x{self.spec.width} is too small for DSLNet: it downsamples by 16 "
                f"(stride-2 conv, max-pool, two average pools), so height and width must be at least {smallest}"
            )
        c0, c1, c2, c3 = config.channels
        block = dict(
            bottleneck_ratio=config.bottleneck_ratio,
            num_layers=config.num_layers,
            reduction=config.reduction,
            dense=config.dense,
            attention=config.attention,
        )
        n = config.blocks_per_stage
        # Normalization inside the model: raw 0-255 RGB in, per the InputSpec.
        scale = self.spec.pixel_range[1] - self.spec.pixel_range[0]
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1) * scale)
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1) * scale)

        self.stem = nn.Sequential(ConvBNReLU(3, c0, 7, 2), nn.MaxPool2d(3, 2, padding=1))
        self.stage1 = nn.Sequential(*[DSLBlock(c0 if i == 0 else c1, c1, **block) for i in range(n)])
        self.transition1 = nn.Sequential(ConvBNReLU(c1, c1, 1), nn.AvgPool2d(2, 2))
        self.stage2 = nn.Sequential(*[DSLBlock(c1 if i == 0 else c2, c2, **block) for i in range(n)])
        self.transition2 = nn.Sequential(ConvBNReLU(c2, c2, 1), nn.AvgPool2d(2, 2))
        self.stage3 = nn.Sequential(*[DSLBlock(c2 if i == 0 else c3, c3, **block) for i in range(n)])
        self.transition3 = ConvBNReLU(c3, c3, 1)
        self.fc = _embedding_head(c3, config.feature_dim, relu=config.embedding_relu)
        self.neck = _bnneck(config.feature_dim) if config.bnneck else nn.Identity()
        self.classifier = nn.Linear(config.feature_dim, config.num_classes)
        # Auxiliary branch on stage 2 (training only; never exported).
        if config.aux_branch:
            self.aux_fc = _embedding_head(c2, config.feature_dim, relu=config.embedding_relu)
            self.aux_classifier = nn.Linear(config.feature_dim, config.num_classes)
        else:
            self.aux_fc = self.aux_classifier = None
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # The forward pass, as named stages ------------------------------------------------------
    def forward_stage2(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels -> stage-2 feature map (where the auxiliary branch attaches)."""
        x = (x - self.mean) / self.std
        return self.stage2(self.transition1(self.stage1(self.stem(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels -> last feature map ``[B, 516, H/16, W/16]``."""
        return self.transition3(self.stage3(self.transition2(self.forward_stage2(x))))

    def forward_embedding(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Feature map -> 512-d embedding (before L2 normalization)."""
        return self.fc(feature_map.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | TrainOutput:
        if not self.training:
            return F.normalize(self.forward_embedding(self.forward_features(x)), dim=1)
        stage2 = self.forward_stage2(x)
        features = self.forward_embedding(self.transition3(self.stage3(self.transition2(stage2))))
        aux_logits = None
        if self.aux_fc is not None:
            aux_logits = self.aux_classifier(self.aux_fc(stage2.mean(dim=(2, 3))))
        return TrainOutput(self.classifier(self.neck(features)), aux_logits, features)

    def reset_classifier(self, num_classes: int) -> None:
        """New identity classifiers (fine-tuning on a dataset with other identities)."""
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        device = self.classifier.weight.device
        self.classifier = nn.Linear(self.config.feature_dim, num_classes).to(device)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)
        if self.aux_classifier is not None:
            self.aux_classifier = nn.Linear(self.config.feature_dim, num_classes).to(device)
            nn.init.normal_(self.aux_classifier.weight, 0, 0.01)
            nn.init.zeros_(self.aux_classifier.bias)

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights needed for inference (no classifiers, no auxiliary branch)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_TRAIN_ONLY_PREFIXES)}


_TRAIN_ONLY_PREFIXES = ("neck.", "classifier.", "aux_fc.", "aux_classifier.")


def _embedding_head(cin: int, feature_dim: int, *, relu: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, feature_dim), nn.BatchNorm1d(feature_dim),
                         nn.ReLU(inplace=True) if relu else nn.Identity())


def _bnneck(feature_dim: int) -> nn.BatchNorm1d:
    neck = nn.BatchNorm1d(feature_dim)
    neck.bias.requires_grad_(False)  # BNNeck: a shift-free normalization before the classifier
    return neck


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------
#: The paper's variants (Tables 4-5) as builder arguments.
VARIANTS: dict[str, dict] = {
    "dslnet": dict(dense=True, attention="css"),
    "dslnet_no_dense": dict(dense=False, attention="css"),  # Table 4 baseline
    "dslnet_se": dict(dense=True, attention="se"),  # Table 5 model 2
    "dslnet_osnet_gate": dict(dense=True, attention="osnet"),  # Table 5 model 3
    "dslnet_no_attention": dict(dense=True, attention="none"),  # Table 5 baseline
}


def build_dslnet(
    *,
    num_classes: int = 1000,
    dense: bool = True,
    attention: Attention = "css",
    aux_branch: bool = True,
    spec: InputSpec | None = None,
    **overrides,
) -> DSLNet:
    """Build DSLNet.

    Args:
        num_classes: identities of the training set (the classifier's width).
        dense: dense connections in the DCG (Table 4 ablation when False).
        attention: "css" (the paper's), "se", "osnet" (shared sigmoid gate) or "none" (Table 5).
        aux_branch: the stage-2 auxiliary classifier used in training.
        spec: the input contract (defaults to 256x128 RGB, ImageNet mean/std).
        **overrides: other :class:`DSLNetConfig` fields (channels, reduction, ...).
    """
    config = DSLNetConfig(num_classes=num_classes, dense=dense, attention=attention, aux_branch=aux_branch, **overrides)
    return DSLNet(config, spec)


def build_variant(name: str, **kwargs) -> DSLNet:
    """Build one of :data:`VARIANTS` by name."""
    try:
        variant = VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown DSLNet variant {name!r}; choose from {sorted(VARIANTS)}") from None
    return build_dslnet(**{**variant, **kwargs})
