"""The TensorRT side stays lazy: importing export (or the plugin module) needs neither TensorRT, torch nor triton,
and asking for the plugin without TensorRT is a clear error. With TensorRT, the plugin registers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from export.plugin.trt_plugin import (
    PluginSupport,
    check_aot_kernel,
    plugin_support,
    register_css_plugin,
    tensorrt_version,
)


def test_import_is_light():
    code = (
        "import sys\n"
        "import export, export.plugin, export.plugin.trt_plugin, export.plugin.graph, export.build_engine, export.tensorrt_build\n"
        "heavy = sorted({'tensorrt', 'torch', 'triton'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_without_tensorrt_the_reason_is_given():
    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed")
    support = plugin_support()
    assert (support.tensorrt, support.jit, support.aot, support.any) == (None, False, False, False)
    assert "TensorRT is not installed" in support.reason
    with pytest.raises(RuntimeError, match="cannot register the CSS plugin: TensorRT is not installed"):
        register_css_plugin()


@pytest.mark.tensorrt
def test_register_with_tensorrt():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it cannot be on these machines)")
    support = plugin_support()
    if not support.jit:
        pytest.skip(support.reason)
    mode = register_css_plugin()
    assert mode == ("aot+jit" if support.aot else "jit")
    assert register_css_plugin() == mode  # idempotent
    import tensorrt as trt

    creator = trt.get_plugin_registry().get_creator("DSLNet_CSS", "1", "dslnet_edge")
    assert creator is not None


def test_a_kernel_tensorrt_cannot_launch_turns_aot_off(monkeypatch):
    """build_engine probes the AOT kernel first: a Triton whose kernel TensorRT cannot launch falls back (auto: plain
    ONNX, on: JIT) with one line saying why, instead of failing inside TensorRT's build."""
    css_triton = pytest.importorskip("export.plugin.css_triton", reason="needs triton")
    from export.build_engine import decide_css_plugin

    support = PluginSupport("10.16.1.11", True, True)

    def refuse(*args, **kwargs):
        raise RuntimeError("triton 9.9 made a CSS kernel that reads the extra parameter p14 (scratch memory)")

    monkeypatch.setattr(css_triton, "compile_css_kernel", refuse)
    checked = check_aot_kernel(support)
    assert checked.jit and not checked.aot and "reads the extra parameter p14" in checked.reason
    auto = decide_css_plugin("auto", checked, have_model=True, has_css=True, precision="fp16")
    assert not auto.used and "reads the extra parameter p14" in auto.reason and "--css-plugin on" in auto.reason
    on = decide_css_plugin("on", checked, have_model=True, has_css=True, precision="fp16")
    assert on.used and on.implementation == "jit"
    monkeypatch.setattr(css_triton, "compile_css_kernel", lambda *a, **k: None)
    assert check_aot_kernel(support) is support
