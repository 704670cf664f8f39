"""The fused CSS kernel as a TensorRT Python plugin (``tensorrt.plugin``, "quickly deployable plugins").

* TensorRT >= 10.6: ``@trtp.register`` + ``@trtp.impl`` (JIT: TensorRT calls back into Python at
  run time, so the engine needs Python, torch and this package wherever it runs).
* TensorRT >= 10.9: ``@trtp.aot_impl`` too (ahead of time: the Triton kernel is compiled to PTX at
  build time and stored in the engine, which then runs without Python -- trtexec, DeepStream,
  Triton Inference Server). The ONNX node's ``aot`` attribute picks it.
* TensorRT 10.3 (Jetson, JetPack 6) has no ``tensorrt.plugin``: the builder uses the plain ONNX.

Nothing here imports tensorrt, torch or triton at module import; :func:`register_css_plugin`
does, on first call, and registers the plugin once per process.

API facts relied on (NVIDIA documentation; no code copied):
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/pluginGuide.html ,
``tensorrt.plugin.register/impl/aot_impl`` (the aot_impl returns (kernel name, PTX,
KernelLaunchParams, SymIntExprs); inputs first, then attributes, then outputs),
``KernelLaunchParams`` (grid_x/block_x/shared_mem), ``SymIntExprs.from_tuple`` of ``SymInt32``,
``ShapeExpr.is_constant/constant_value``, and NVIDIA/TensorRT
``samples/python/quickly_deployable_plugins``.

No ``@trtp.autotune`` is defined: the network is strongly typed, so every input's type comes from
the ONNX (streams float32 or float16, FC weights float32) and the output's from
``register`` (the streams' type) -- exactly what TensorRT assumes without an autotune function.
"""

# No ``from __future__ import annotations`` here: tensorrt.plugin reads the registration function's
# annotations to tell input tensors (trtp.TensorDesc) from attributes, so they must be real objects.
import dataclasses
import re

from export.plugin import NUM_STREAMS, PLUGIN_ID

__all__ = ["PluginSupport", "plugin_support", "check_aot_kernel", "register_css_plugin", "tensorrt_version"]

_registered: str | None = None
_failed: str | None = None


@dataclasses.dataclass(frozen=True)
class PluginSupport:
    """What the installed TensorRT offers for Python plugins."""

    tensorrt: str | None  # version string, None when TensorRT is not installed
    jit: bool  # tensorrt.plugin with register/impl (10.6+)
    aot: bool  # tensorrt.plugin.aot_impl (10.9+)
    reason: str = ""  # why a flavour is unavailable

    @property
    def any(self) -> bool:
        return self.jit or self.aot


def tensorrt_version() -> tuple[int, int] | None:
    """(major, minor) of the installed TensorRT, or None."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    match = re.match(r"(\d+)\.(\d+)", trt.__version__)
    return (int(match.group(1)), int(match.group(2))) if match else None


def plugin_support() -> PluginSupport:
    """Probe TensorRT (>= 10.6 for JIT, >= 10.9 for AOT) and triton, without registering anything."""
    version = tensorrt_version()
    if version is None:
        return PluginSupport(None, False, False, "TensorRT is not installed")
    import tensorrt as trt

    try:
        import tensorrt.plugin as trtp
    except ImportError:
        return PluginSupport(trt.__version__, False, False, f"TensorRT {trt.__version__} has no tensorrt.plugin (needs >= 10.6)")
    try:
        import triton  # noqa: F401
    except ImportError:
        return PluginSupport(trt.__version__, False, False, "triton is not installed (pip install 'dslnet-edge[triton]')")
    jit = hasattr(trtp, "register") and hasattr(trtp, "impl")
    aot = jit and hasattr(trtp, "aot_impl") and version >= (10, 9)
    reason = "" if aot else f"TensorRT {trt.__version__} has no ahead-of-time Python plugins (needs >= 10.9)"
    return PluginSupport(trt.__version__, jit, aot, reason)


def check_aot_kernel(support: PluginSupport, *, target=None) -> PluginSupport:
    """``support`` with AOT turned off (and the reason) when this Triton cannot make a CSS kernel that
    TensorRT's AOT launch runs: it compiles one for ``target`` (default: the current GPU) and checks its
    parameters (:func:`export.plugin.css_triton.compile_css_kernel`)."""
    if not support.aot:
        return support
    try:
        from export.plugin.css_triton import compile_css_kernel

        compile_css_kernel("fp32", 63, 3, target=target)
    except Exception as exc:  # any compile failure means no AOT kernel here; say which
        reason = f"the ahead-of-time CSS kernel cannot be made here ({type(exc).__name__}: {exc})"
        return dataclasses.replace(support, aot=False, reason=reason)
    return support


def register_css_plugin() -> str:
    """Register ``dslnet_edge::DSLNet_CSS`` with TensorRT; returns "aot+jit" or "jit".

    Raises RuntimeError naming what is missing when TensorRT has no Python plugins.
    """
    global _registered, _failed
    if _registered is not None:
        return _registered
    if _failed is not None:  # tensorrt.plugin keeps a half-made registration: a retry would only say "already defined"
        raise RuntimeError(f"registering the CSS plugin failed earlier in this process: {_failed}")
    if NUM_STREAMS != 6:  # css_desc/css_impl below spell out six stream inputs
        raise RuntimeError(f"the CSS plugin signature is written for 6 streams, not {NUM_STREAMS}")
    support = plugin_support()
    if not support.jit:
        raise RuntimeError(f"cannot register the CSS plugin: {support.reason}")

    try:
        _registered = _register(support)
    except Exception as exc:
        _failed = f"{type(exc).__name__}: {exc}"
        raise
    return _registered


def _register(support: PluginSupport) -> str:
    import tensorrt.plugin as trtp

    @trtp.register(PLUGIN_ID)
    def css_desc(
        s0: trtp.TensorDesc,
        s1: trtp.TensorDesc,
        s2: trtp.TensorDesc,
        s3: trtp.TensorDesc,
        s4: trtp.TensorDesc,
        s5: trtp.TensorDesc,
        fc1_weight: trtp.TensorDesc,
        fc1_bias: trtp.TensorDesc,
        fc2_weight: trtp.TensorDesc,
        fc2_bias: trtp.TensorDesc,
    ) -> trtp.TensorDesc:
        return s0.like()  # D has the streams' shape and type (Eq. 5)

    @trtp.impl(PLUGIN_ID)
    def css_impl(s0, s1, s2, s3, s4, s5, fc1_weight, fc1_bias, fc2_weight, fc2_bias, outputs, stream) -> None:
        import torch

        from export.plugin.css_triton import css_triton

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            tensors = [torch.as_tensor(t, device="cuda") for t in (s0, s1, s2, s3, s4, s5)]
            weights = [torch.as_tensor(t, device="cuda") for t in (fc1_weight, fc1_bias, fc2_weight, fc2_bias)]
            css_triton(tensors, *weights, out=torch.as_tensor(outputs[0], device="cuda"))

    mode = "jit"
    if support.aot:

        # TensorRT's validator (tensorrt.plugin._validate._validate_aot_impl, 10.9 to 11.x) wants exactly
        # (inputs..., outputs, tactic) and this return annotation; the builder passes the tactic.
        @trtp.aot_impl(PLUGIN_ID)
        def css_aot_impl(
            s0, s1, s2, s3, s4, s5, fc1_weight, fc1_bias, fc2_weight, fc2_bias, outputs: tuple[trtp.TensorDesc], tactic: int
        ) -> tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymExprs]:
            import tensorrt as trt

            from export.plugin.css_triton import compile_css_kernel

            hidden = _build_constant(fc1_weight.shape_expr[1], "CSS hidden width")
            channels = _build_constant(fc1_weight.shape_expr[2], "CSS channels")
            dtype = "fp16" if s0.dtype == trt.float16 else "fp32"
            kernel = compile_css_kernel(dtype, channels, hidden)  # one kernel for every tactic (no autotune)
            params = trtp.KernelLaunchParams()
            params.grid_x = s0.shape_expr[0]  # one program per sample (symbolic: dynamic batch)
            params.block_x = kernel.num_warps * 32
            params.shared_mem = kernel.shared
            hw = s0.shape_expr[2] * s0.shape_expr[3]
            extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in (s0.shape_expr[1], hw, fc1_weight.shape_expr[1])])
            return kernel.name.encode(), kernel.ptx.encode(), params, extra

        mode = "aot+jit"
    return mode


def _build_constant(expr, what: str) -> int:
    if not expr.is_constant:
        raise RuntimeError(f"{what} must be a build-time constant for the AOT CSS kernel")
    return int(expr.constant_value())

