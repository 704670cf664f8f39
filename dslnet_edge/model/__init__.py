"""DSLNet in PyTorch. Importing this package imports torch (``import dslnet_edge`` does not)."""

from dslnet_edge.model.dslnet import (
    ATTENTIONS,
    VARIANTS,
    ChannelwiseScaleSelection,
    DenseConnectionGroup,
    DSLBlock,
    DSLNet,
    DSLNetConfig,
    TrainOutput,
    build_dslnet,
    build_variant,
    css_reference,
)

__all__ = [
    "ATTENTIONS",
    "VARIANTS",
    "ChannelwiseScaleSelection",
    "DenseConnectionGroup",
    "DSLBlock",
    "DSLNet",
    "DSLNetConfig",
    "TrainOutput",
    "build_dslnet",
    "build_variant",
    "css_reference",
]
