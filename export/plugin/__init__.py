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
#: The ONNX domain of the plugin node: always the plugin's namespace. Since TensorRT 10.10 the ONNX
#: parser's plugin importer reads the namespace from the node's domain (older parsers read only the
#: ``plugin_namespace`` attribute), so the two must be equal -- both are written, from this one
#: value. A domain of our own also keeps ``onnx.checker`` and ONNX Runtime from mistaking the node
#: for a standard operator.
PLUGIN_DOMAIN = PLUGIN_NAMESPACE
#: Streams per CSS in DSLNet (the six DCG outputs); the plugin signature is fixed to it.
NUM_STREAMS = 6

__all__ = ["PLUGIN_NAME", "PLUGIN_NAMESPACE", "PLUGIN_VERSION", "PLUGIN_ID", "PLUGIN_DOMAIN", "NUM_STREAMS"]
