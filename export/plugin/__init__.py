"""The fused CSS plugin: ONNX graph pass, Triton kernel, TensorRT plugin, ONNX Runtime reference op.

* :mod:`export.plugin.graph` -- the plugin flavour of the ONNX (each CSS module = one node).
* :mod:`export.plugin.css_triton` -- the Triton kernel fusing the whole CSS.
* :mod:`export.plugin.trt_plugin` -- its registration with ``tensorrt.plugin`` (TensorRT >= 10.6).
* :mod:`export.plugin.ort_reference` -- the plugin node evaluated inside ONNX Runtime.

Importing this package imports none of torch, triton or tensorrt.
"""

#: The plugin's name = the ONNX node's op type (TensorRT's parser looks plugins up by op type).
PLUGIN_NAME = "DSLNet_CSS"
#: The plugin's namespace = the node's ``plugin_namespace`` attribute.
PLUGIN_NAMESPACE = "dslnet_edge"
PLUGIN_VERSION = "1"
#: ``tensorrt.plugin`` id, "{namespace}::{name}".
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"
#: The ONNX domain of the plugin node. TensorRT ignores node domains (it dispatches on the op
#: type and, since 10.x, on the ``plugin_namespace`` attribute); a domain of our own keeps
#: ``onnx.checker`` and ONNX Runtime from mistaking the node for a standard operator.
PLUGIN_DOMAIN = "dslnet_edge"
#: Streams per CSS in DSLNet (the six DCG outputs); the plugin signature is fixed to it.
NUM_STREAMS = 6

__all__ = ["PLUGIN_NAME", "PLUGIN_NAMESPACE", "PLUGIN_VERSION", "PLUGIN_ID", "PLUGIN_DOMAIN", "NUM_STREAMS"]
