"""Export: checkpoint -> ONNX (FP32/FP16/plugin flavours) -> TensorRT engine (``python -m export.build_engine``)."""
