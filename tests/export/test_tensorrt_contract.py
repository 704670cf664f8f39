"""Contract tests against TensorRT's own Python code, per TensorRT version (no GPU, no libnvinfer).

For 10.3.0, 10.9.0.34, 10.16.1.11 (``tensorrt-cu12-bindings``) and 11.4.0.106 (``tensorrt-cu13-bindings``):

* the wheel's pure-Python ``tensorrt.plugin`` (register/impl/aot_impl and their validators) runs the
  project's real :func:`export.plugin.trt_plugin.register_css_plugin` -- the native core replaced by a
  stand-in whose names exist exactly when that version binds them (``tests/tensorrt_wheels.py``) --
  and the registered ``aot_impl`` is called the way the wheel's AOT plugin class calls it at build time
  (inputs, outputs, tactic), its results checked as that class checks them;
* every ``tensorrt`` attribute the project's TensorRT code touches exists in that version's bindings.

The wheels come from ``python tests/tensorrt_wheels.py download`` (``.ci/run`` runs it); without them
these tests skip with that command as the reason, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorrt_wheels

REPO = Path(__file__).resolve().parents[2]
VERSIONS = list(tensorrt_wheels.WHEELS)


def _need_wheel(version: str) -> None:
    reason = tensorrt_wheels.missing_reason(version)
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def _run(code: str, version: str, timeout: int = 300) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", code, version], capture_output=True, text=True, env=env,
                            timeout=timeout, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# tensorrt.plugin: register_css_plugin through NVIDIA's validators
# ---------------------------------------------------------------------------------------------
_PLUGIN_CONTRACT = textwrap.dedent(
    """
    import dataclasses, functools, json, re, sys
    import tensorrt_wheels
    version = sys.argv[1]
    trt = tensorrt_wheels.install_stub(version)
    from export.build_engine import decide_css_plugin
    from export.plugin import PLUGIN_ID, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION
    from export.plugin import trt_plugin
    out = {}
    support = trt_plugin.plugin_support()
    out["support"] = dataclasses.asdict(support)
    choice = decide_css_plugin("auto", support, have_model=True, has_css=True, precision="fp16")
    out["auto"] = [choice.used, choice.implementation]
    for attempt in ("first", "second"):
        try:
            out[attempt] = trt_plugin.register_css_plugin()
        except Exception as exc:
            out[attempt] = f"{type(exc).__name__}: {exc}"
    if support.jit:
        from tensorrt.plugin import _lib
        plugin = _lib.QDP_REGISTRY[PLUGIN_ID]
        out["inputs"] = plugin.input_tensor_names
        out["attrs"] = list(plugin.input_attrs)
        out["num_outputs"] = plugin.num_outputs
        out["creator"] = trt.get_plugin_registry().get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
        out["has_aot_impl"] = plugin.aot_impl_func is not None
    if support.jit and getattr(_lib.QDP_REGISTRY[PLUGIN_ID], "aot_impl_func", None) is not None:
        import tensorrt.plugin as trtp
        from tensorrt.plugin._tensor import ShapeExpr, ShapeExprs, SymIntExpr
        from triton.backends.compiler import GPUTarget
        import export.plugin.css_triton as css_triton
        # no GPU here: compile for Hopper explicitly (the plugin compiles for the current GPU)
        css_triton.compile_css_kernel = functools.partial(css_triton.compile_css_kernel, target=GPUTarget("cuda", 90, 32))

        class Dim(trt.IDimensionExpr):  # what TensorRT's IExprBuilder hands the plugin: constants and symbols
            def __init__(self, value=None, text=None):
                self.value, self.text = value, text if text is not None else str(value)
            def is_constant(self):
                return self.value is not None
            def get_constant_value(self):
                return self.value

        class ExprBuilder:
            def constant(self, value):
                return Dim(value)
            def operation(self, op, a, b):
                name = op.__name__
                if a.is_constant() and b.is_constant():
                    return Dim({"PROD": a.value * b.value, "SUM": a.value + b.value, "SUB": a.value - b.value}[name])
                return Dim(None, f"({a.text} {name} {b.text})")

        SymIntExpr._exprBuilder = ExprBuilder()
        batch = ShapeExpr(Dim(None, "batch"))
        c, h, w, r = 63, 64, 32, 3
        def desc(shape, dtype):
            return trtp.TensorDesc(ShapeExprs.from_tuple([e if isinstance(e, ShapeExpr) else ShapeExpr(e) for e in shape]), dtype)
        streams = [desc((batch, c, h, w), trt.float16) for _ in range(6)]
        weights = [desc(s, trt.float32) for s in ((6, r, c), (6, r), (6, c, r), (6, c))]
        outputs = (desc((batch, c, h, w), trt.float16),)
        plugin = _lib.QDP_REGISTRY[PLUGIN_ID]
        # the wheel's _TemplateAOTPlugin.get_launch_params: aot_impl(*inputs, *attrs, outputs, tactic), then type checks
        name, ptx, params, extra = plugin.aot_impl_func(*streams, *weights, outputs, 0)
        assert isinstance(name, (str, bytes)) and isinstance(ptx, (str, bytes))
        assert isinstance(params, trtp.KernelLaunchParams), type(params)
        assert isinstance(extra, trtp.SymExprs), type(extra)
        from tensorrt.plugin._tensor import SymInt32
        assert all(isinstance(a, SymInt32) for a in extra)
        launch = {k: getattr(params, k)().expr for k in ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem")}
        out["launch"] = {k: (v.value if v.is_constant() else v.text) for k, v in launch.items()}
        out["extra"] = [a().expr.value if a().expr.is_constant() else a().expr.text for a in extra]
        ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
        name = name.decode() if isinstance(name, bytes) else name
        entry = re.search(r"\\.entry\\s+(\\w+)\\s*\\((.*?)\\)", ptx, re.S)
        out["kernel"] = {"name": name, "entry": entry.group(1), "params": entry.group(2).count(".param")}
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("version", VERSIONS)
def test_register_css_plugin_through_tensorrt_plugin(version):
    _need_wheel(version)
    pytest.importorskip("triton", reason="the CSS plugin's kernels are Triton kernels (pip install 'dslnet-edge[triton]')")
    out = _run(_PLUGIN_CONTRACT, version)
    if version == "10.3.0":  # no tensorrt.plugin: the builder keeps the plain ONNX
        assert out["support"]["jit"] is False and "has no tensorrt.plugin" in out["support"]["reason"], out
        assert out["auto"] == [False, None]
        assert out["first"].startswith("RuntimeError: cannot register the CSS plugin"), out["first"]
        return
    assert out["support"]["jit"] and out["support"]["aot"], out["support"]
    assert out["first"] == "aot+jit", out["first"]
    assert out["second"] == "aot+jit", out["second"]  # once per process, then the same answer
    assert out["auto"] == [True, "aot"]
    assert out["inputs"] == ["s0", "s1", "s2", "s3", "s4", "s5", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]
    assert out["attrs"] == [] and out["num_outputs"] == 1 and out["creator"] and out["has_aot_impl"]
    # one program per sample over the symbolic batch, 8 warps, the kernel's shared memory; C, H*W, R as int32
    launch = out["launch"]
    assert launch["grid_x"] == "batch" and (launch["grid_y"], launch["grid_z"]) == (1, 1), launch
    assert (launch["block_x"], launch["block_y"], launch["block_z"]) == (256, 1, 1) and launch["shared_mem"] > 0, launch
    assert out["extra"] == [63, 64 * 32, 3]
    assert out["kernel"] == {"name": "css_fused_kernel", "entry": "css_fused_kernel", "params": 14}, out["kernel"]


# ---------------------------------------------------------------------------------------------
# every tensorrt attribute the project uses, against each version's bindings
# ---------------------------------------------------------------------------------------------
#: Where the project touches TensorRT. ``trt.<name>...`` chains are read from these files' code; the
#: methods called on TensorRT objects are listed below by the object they are called on.
TENSORRT_MODULES = ["export/tensorrt_build.py", "export/build_engine.py", "export/plugin/trt_plugin.py",
                    "dslnet_edge/backends/tensorrt_backend.py"]


def _trt_chains(path: Path) -> set[str]:
    """Dotted names rooted at the module alias ``trt`` (``trt.BuilderFlag.FP16`` -> 'BuilderFlag.FP16'), also
    through a local alias (``flags = trt.NetworkDefinitionCreationFlag; flags.STRONGLY_TYPED``) and in
    ``hasattr``/``getattr`` with a literal name."""
    import ast

    tree = ast.parse(path.read_text())

    def chain(node) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        if node.id == "trt":
            return ".".join(reversed(parts))
        if node.id in aliases:
            return ".".join([aliases[node.id], *reversed(parts)])
        return None

    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute):
            target = chain(node.value)
            if target:
                aliases.update({t.id: target for t in node.targets if isinstance(t, ast.Name)})
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found = chain(node)
            if found:
                chains.add(found)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            base = chain(node.args[0]) if not (isinstance(node.args[0], ast.Name) and node.args[0].id == "trt") else ""
            if base is not None:
                chains.add(f"{base}.{node.args[1].value}".lstrip("."))
    # keep only the longest chains (BuilderFlag.FP16 covers BuilderFlag)
    return {c for c in chains if c and not any(o != c and o.startswith(c + ".") for o in chains)}


def test_the_chain_reader_sees_what_the_code_uses():
    chains = set().union(*(_trt_chains(REPO / m) for m in TENSORRT_MODULES))
    for expected in ("NetworkDefinitionCreationFlag.STRONGLY_TYPED", "NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS",
                     "BuilderFlag.FP16", "MemoryPoolType.WORKSPACE",
                     "TensorIOMode.INPUT", "ILogger.Severity.ERROR"):
        assert expected in chains, sorted(chains)


#: (object, methods): methods the project calls on TensorRT objects (not reachable as ``trt.X``).
TENSORRT_METHODS = {
    "Builder": ["create_network", "create_builder_config", "create_optimization_profile", "build_serialized_network"],
    "OnnxParser": ["parse_from_file", "num_errors", "get_error"],
    "ParserError": ["desc", "node_name", "node_operator"],
    "IBuilderConfig": ["set_memory_pool_limit", "set_flag", "add_optimization_profile", "create_timing_cache",
                       "set_timing_cache", "get_timing_cache"],
    "ITimingCache": ["serialize"],
    "IOptimizationProfile": ["set_shape"],
    "Runtime": ["deserialize_cuda_engine"],
    "ICudaEngine": ["num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
                    "get_tensor_profile_shape", "create_execution_context"],
    "IExecutionContext": ["set_input_shape", "set_tensor_address", "execute_async_v3"],
    "IPluginRegistry": ["get_creator", "load_library"],
    "ILogger": ["log"],
}
#: What a version may lack, and the code path that copes with it.
VERSION_GAPS = {
    # TensorRT 11 removed the weak-typing builder flags; build_engine_bytes sets them only without STRONGLY_TYPED
    "BuilderFlag.FP16": ("11.",), "BuilderFlag.INT8": ("11.",),
    # AOT Python plugins came in 10.9; the flag is asked for with hasattr first
    "NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS": ("10.3.",),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_tensorrt_name_the_project_uses_is_bound(version):
    _need_wheel(version)
    symbols = tensorrt_wheels.binding_symbols(version)
    chains = set().union(*(_trt_chains(REPO / m) for m in TENSORRT_MODULES))
    names = {c: c.split(".") for c in chains}
    names.update({f"{obj}.{m}": [obj, m] for obj, methods in TENSORRT_METHODS.items() for m in methods})
    missing = sorted(dotted for dotted, parts in names.items()
                     if not all(p in symbols for p in parts) and not version.startswith(VERSION_GAPS.get(dotted, ("-",))))
    assert not missing, f"TensorRT {version} binds none of: {missing}"


def test_the_symbol_reader_tells_versions_apart():
    """The reader must see removals, or the test above could not fail: TensorRT 11 dropped these."""
    for version in ("10.16.1.11", "11.4.0.106"):
        _need_wheel(version)
    old, new = tensorrt_wheels.binding_symbols("10.16.1.11"), tensorrt_wheels.binding_symbols("11.4.0.106")
    for name in ("EXPLICIT_BATCH", "get_plugin_creator", "FP16"):
        assert name in old and name not in new, name
    for name in ("STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "execute_async_v3", "QuickPluginCreationRequest"):
        assert name in new, name
    assert "QuickPluginCreationRequest" not in tensorrt_wheels.binding_symbols("10.3.0") if not tensorrt_wheels.missing_reason("10.3.0") else True


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fake_gpu_speaks_only_tensorrts_names(version):
    """tests/fake_gpu.py stands in for TensorRT in the backend and build tests: every name it offers (so every
    name the code it runs could call) must be bound by each version, or those tests could pass on a name
    TensorRT lacks."""
    _need_wheel(version)
    from fake_gpu import FAKE_TENSORRT_NAMES, FakeTensorRT

    symbols = tensorrt_wheels.binding_symbols(version)
    missing = sorted(f"{owner}.{name}" for owner, names in FAKE_TENSORRT_NAMES.items() for name in names
                     if not (name in symbols and (owner == "tensorrt" or owner in symbols)))
    assert not missing, f"TensorRT {version} binds none of: {missing}"
    fake = FakeTensorRT()
    offered = {n for n in dir(fake) if not n.startswith("_")} | {"__version__"}
    assert offered <= set(FAKE_TENSORRT_NAMES["tensorrt"]) | {"registry"}, offered  # the list covers the fake


_RETRY = textwrap.dedent(
    """
    import json, sys
    import tensorrt_wheels
    tensorrt_wheels.install_stub(sys.argv[1])
    import tensorrt.plugin as trtp
    from export.plugin import trt_plugin
    real = trtp.aot_impl
    def refusing(plugin_id):  # the validator refusing the aot_impl, as 10.9+ did with the old signature
        raise ValueError("Signature of the aot_impl function does not match")
    trtp.aot_impl = refusing
    out = []
    for _ in range(2):
        try:
            out.append(trt_plugin.register_css_plugin())
        except Exception as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(out))
    """
)


def test_a_failed_registration_is_reported_again_not_as_a_duplicate():
    """tensorrt.plugin keeps the half-made registration; a retry must repeat the cause, not 'already has a definition'."""
    _need_wheel("10.16.1.11")
    pytest.importorskip("triton", reason="the CSS plugin's kernels are Triton kernels (pip install 'dslnet-edge[triton]')")
    first, second = _run(_RETRY, "10.16.1.11")
    assert first == "ValueError: Signature of the aot_impl function does not match"
    assert second.startswith("RuntimeError: registering the CSS plugin failed earlier in this process: ValueError: Signature")
    assert "already has a" not in second
