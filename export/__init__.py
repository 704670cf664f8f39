"""Export: checkpoint -> ONNX (FP32/FP16/plugin flavours) -> TensorRT engine (``python -m export.build_engine``).

Commands::

    # plain FP32 ONNX, checked against PyTorch on random inputs and real crops
    python -m export.onnx --checkpoint ckpt.pt --out model.onnx [--crops DIR]

    # TensorRT engine (strongly typed; TensorRT 10 and 11); every ONNX it makes is kept beside --out
    python -m export.build_engine --checkpoint ckpt.pt --fp16 --out model.engine \\
        [--min-batch 1 --opt-batch 8 --max-batch 32] [--workspace MIB] [--timing-cache FILE] \\
        [--css-plugin auto|on|off]
    python -m export.build_engine --onnx model.onnx --fp16 --out model.engine
    python -m export.build_engine --int8 --qdq-onnx model.int8.onnx --onnx model.onnx --out model.engine

Without TensorRT or a GPU, ``build_engine`` still makes and checks every ONNX, then exits with
status 2 and one line saying where the ready ONNX is and the ``trtexec`` command for the target.

Modules: :mod:`export.contract` (tensor names, opset, errors), :mod:`export.onnx` (export + CLI),
:mod:`export.parity` (inputs for :func:`dslnet_edge.comparison.compare`; the models run in the
runtime's backends), :mod:`export.precision` (FP16 pass, strong-typing check),
:mod:`export.plugin` (CSS plugin: graph pass, Triton kernel, TensorRT plugin, ONNX Runtime
reference op), :mod:`export.tensorrt_build` (the thin TensorRT compile), :mod:`export.build_engine`.
Importing any of them needs neither torch, triton nor TensorRT; those load when used.
"""
