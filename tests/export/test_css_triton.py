"""The fused CSS Triton kernel equals dslnet_edge.model.css_reference (CPU: TRITON_INTERPRET=1).

Shapes stay small: the interpreter runs the kernel in numpy, element block by element block.
On a CUDA machine the same checks run on the GPU as well (``test_kernel_on_gpu``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # also set by conftest.py, before anything imports triton
torch = pytest.importorskip("torch", reason="the kernel tests compare against the torch CSS")
triton_language = pytest.importorskip("triton.language", reason="the fused CSS kernel needs triton (pip install 'dslnet-edge[triton]')")
if type(triton_language.zeros).__name__ != "InterpretedFunction":
    raise RuntimeError("triton was imported before TRITON_INTERPRET=1 was set; the CPU kernel tests cannot run")

import export.plugin.css_triton as css_triton_module  # noqa: E402
from dslnet_edge.model import css_reference  # noqa: E402

css_triton = css_triton_module.css_triton

# (batch, channels, height, width, hidden): DSLNet's stage widths 63/96/129 with their CSS hidden
# widths 3/6/8, plus odd sizes that exercise every mask (channels < block, HW not a block multiple)
SHAPES = [(2, 63, 4, 3, 3), (1, 96, 3, 5, 6), (1, 129, 2, 3, 8), (3, 5, 7, 9, 1)]
# float16: outputs are rounded to float16 (half an ulp = 2**-11 relative); the maths is float32 in both
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3)}


def _case(shape, dtype, seed, device="cpu"):
    b, c, h, w, r = shape
    g = torch.Generator().manual_seed(seed)
    streams = [torch.relu(torch.randn(b, c, h, w, generator=g)).to(device, dtype) for _ in range(6)]
    weights = [torch.randn(*s, generator=g).mul(0.3).to(device) for s in ((6, r, c), (6, r), (6, c, r), (6, c))]
    return streams, weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_equals_css_reference(shape, dtype):
    streams, weights = _case(shape, dtype, seed=sum(shape))
    out = css_triton(streams, *weights)
    expected = css_reference([s.float() for s in streams], *weights)
    assert out.dtype == dtype and out.shape == streams[0].shape
    torch.testing.assert_close(out.float(), expected, **TOLERANCES[dtype])


def test_kernel_with_a_real_css_module(model):
    """The weights of the tiny DSLNet's first CSS module, on streams shaped like its DCG outputs."""
    from dslnet_edge.model import ChannelwiseScaleSelection

    css = next(m for m in model.modules() if isinstance(m, ChannelwiseScaleSelection))
    streams = [torch.relu(torch.randn(2, css.channels, 8, 4)) for _ in range(6)]
    weights = [p.detach() for p in (css.fc1_weight, css.fc1_bias, css.fc2_weight, css.fc2_bias)]
    torch.testing.assert_close(css_triton(streams, *weights), css(streams).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s, w: (s[:5], w), "takes 6 streams"),
        (lambda s, w: ([s[0][0]] * 6, w), r"must be \[B, C, H, W\]"),
        (lambda s, w: ([*s[:5], s[5][:, :2]], w), "stream 5 is"),
        (lambda s, w: ([x.double() for x in s], w), "float32 or float16"),
        (lambda s, w: (s, [w[0][:, :, :2], *w[1:]]), "do not match 6 streams"),
    ],
)
def test_bad_inputs(mutate, message):
    streams, weights = _case((1, 4, 2, 2, 1), torch.float32, seed=0)
    streams, weights = mutate(streams, weights)
    with pytest.raises(ValueError, match=message):
        css_triton(streams, *weights)


def test_launch_config():
    cfg = css_triton_module.launch_config(129, 8)
    assert (cfg.block_c, cfg.block_r) == (256, 8) and cfg.block_c * cfg.block_hw == 4096
    assert css_triton_module.launch_config(3, 1).block_hw == 1024
    with pytest.raises(ValueError):
        css_triton_module.launch_config(0, 1)


def test_aot_compile_to_ptx():
    """The AOT plugin's compile step, for Hopper and Jetson Orin, without a GPU (Triton's NVIDIA backend)."""
    code = textwrap.dedent(
        """
        from triton.backends.compiler import GPUTarget
        from export.plugin.css_triton import compile_css_kernel
        for dtype, cc in (("fp16", 90), ("fp32", 87)):
            k = compile_css_kernel(dtype, 63, 3, target=GPUTarget("cuda", cc, 32))
            assert k.name == "css_fused_kernel" and ".entry css_fused_kernel" in k.ptx, k.name
            assert k.num_warps == 8 and k.num_params >= 14, (k.num_warps, k.num_params)
            print(dtype, cc, k.num_params, k.shared)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if result.returncode and "ptxas" in result.stderr.lower() and "not found" in result.stderr.lower():
        pytest.skip("triton's bundled ptxas is missing")
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.gpu
def test_kernel_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the kernel was checked in the Triton interpreter only")
    code = textwrap.dedent(
        """
        import torch
        from dslnet_edge.model import css_reference
        from export.plugin.css_triton import css_triton
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
            for b, c, h, w, r in ((8, 63, 64, 32, 3), (8, 96, 32, 16, 6), (8, 129, 16, 8, 8)):
                s = [torch.relu(torch.randn(b, c, h, w, device="cuda")).to(dtype) for _ in range(6)]
                wts = [torch.randn(*x, device="cuda") * 0.3 for x in ((6, r, c), (6, r), (6, c, r), (6, c))]
                torch.testing.assert_close(css_triton(s, *wts).float(), css_reference([x.float() for x in s], *wts),
                                           rtol=tol, atol=tol)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
