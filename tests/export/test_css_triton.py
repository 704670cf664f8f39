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


# The AOT plugin's compile step per Triton version, without a GPU (Triton's NVIDIA backend + its bundled
# ptxas/cuobjdump). NVIDIA's quickly_deployable_plugins sample pins Triton 3.2 up to TensorRT 10.14 and
# 3.5 from 10.16; 3.2 takes ASTSource(constants=), 3.3+ constexprs= and adds two scratch parameters.
_AOT_CHECK = textwrap.dedent(
    """
    import json, pathlib, re, subprocess, sys, tempfile
    import triton
    from triton.backends.compiler import GPUTarget
    from export.plugin.css_triton import compile_css_kernel
    bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    out = {"triton": triton.__version__, "kernels": []}
    for dtype, cc in (("fp16", 90), ("fp32", 87)):
        k = compile_css_kernel(dtype, 63, 3, target=GPUTarget("cuda", cc, 32))
        entry = re.search(r"\\.entry\\s+(\\w+)\\s*\\((.*?)\\)", k.ptx, re.S)
        ptx_params = entry.group(2).count(".param")
        arch = re.search(r"\\.target\\s+(\\w+)", k.ptx).group(1)
        with tempfile.TemporaryDirectory() as tmp:
            (pathlib.Path(tmp) / "k.ptx").write_text(k.ptx)
            for ptxas in ("ptxas-blackwell", "ptxas"):  # the newest ptxas Triton ships reads its newest PTX
                if (bin_dir / ptxas).is_file():
                    done = subprocess.run([str(bin_dir / ptxas), f"-arch={arch}", "k.ptx", "-o", "k.cubin"], cwd=tmp,
                                          capture_output=True, text=True)
                    if done.returncode == 0:
                        break
            assert done.returncode == 0, done.stderr
            elf = subprocess.run([str(bin_dir / "cuobjdump"), "-elf", "k.cubin"], cwd=tmp, capture_output=True,
                                 text=True, check=True).stdout
        ordinals = {int(m, 16) for m in re.findall(r"Ordinal\\s*:\\s*0x([0-9a-f]+)", elf)}
        out["kernels"].append({"dtype": dtype, "cc": cc, "name": k.name, "entry": entry.group(1), "num_warps": k.num_warps,
                               "num_params": k.num_params, "ptx_params": ptx_params, "cubin_params": len(ordinals),
                               "launch": 14})
    print(json.dumps(out))
    """
)


def _triton_32_python() -> str | None:
    """A Python with triton 3.2 (a throwaway venv: $DSLNET_TRITON32_PYTHON or ~/.cache/dslnet-edge/triton-3.2)."""
    path = os.environ.get("DSLNET_TRITON32_PYTHON") or os.path.expanduser("~/.cache/dslnet-edge/triton-3.2/bin/python")
    return path if os.path.isfile(path) else None


@pytest.mark.parametrize("which", ["installed", "3.2"])
def test_aot_kernel_is_what_tensorrt_launches(which):
    """Compiles; the PTX entry and the assembled cubin have exactly the 14 parameters TensorRT's AOT launch
    passes (10 inputs, 3 int32 extra args, 1 output) in the kernel's argument order; name and warps match."""
    python = sys.executable
    if which == "3.2":
        python = _triton_32_python()
        if python is None:
            pytest.skip("no Python with triton 3.2 here (python -m venv ~/.cache/dslnet-edge/triton-3.2 && "
                        "~/.cache/dslnet-edge/triton-3.2/bin/pip install triton==3.2.0); the installed triton is tested")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(__import__("pathlib").Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    result = subprocess.run([python, "-c", _AOT_CHECK], capture_output=True, text=True, env=env, timeout=300)
    if result.returncode and "ptxas" in result.stderr.lower() and "not found" in result.stderr.lower():
        pytest.skip("triton's bundled ptxas is missing")
    assert result.returncode == 0, result.stderr[-2000:]
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    if which == "3.2":
        assert report["triton"].startswith("3.2."), report["triton"]
    for k in report["kernels"]:
        assert k["name"] == k["entry"] == "css_fused_kernel" and k["num_warps"] == 8, k
        assert k["num_params"] == k["ptx_params"] == k["cubin_params"] == 14, (report["triton"], k)
    # the kernel's own argument order is the launch order: 10 pointers in, 3 int32, 1 pointer out
    names = css_triton_module.css_fused_kernel.arg_names
    assert names[:10] == ["s0", "s1", "s2", "s3", "s4", "s5", "w1_ptr", "b1_ptr", "w2_ptr", "b2_ptr"]
    assert names[10:14] == ["C", "HW", "R", "out_ptr"]


def test_trim_refuses_a_kernel_that_reads_its_extra_parameters():
    ptx = (".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u64 k_param_1\n)\n{\n"
           "\tld.param.b64 %rd1, [k_param_1];\n}\n")
    with pytest.raises(RuntimeError, match="reads the extra parameter k_param_1"):
        css_triton_module.trim_unused_params(ptx, "k", 1)
    with pytest.raises(RuntimeError, match="has 2 parameters; TensorRT's AOT launch passes 3"):
        css_triton_module.trim_unused_params(ptx, "k", 3)
    unused = ptx.replace("[k_param_1]", "[k_param_0]")
    trimmed, count = css_triton_module.trim_unused_params(unused, "k", 1)
    assert count == 1 and "k_param_1" not in trimmed and "k_param_0" in trimmed


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
