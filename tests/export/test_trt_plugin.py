"""The TensorRT side stays lazy: importing export (or the plugin module) needs neither TensorRT, torch nor triton,
and asking for the plugin without TensorRT is a clear error. With TensorRT, the plugin registers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from export.plugin.trt_plugin import plugin_support, register_css_plugin, tensorrt_version


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
