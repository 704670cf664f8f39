"""The whole CSS (paper Eq. 2-5) as one Triton kernel.

One program per sample ``b``:

1. **pool** -- one pass over the six streams: ``V[c] = mean_hw(sum_n s_n[b, c])`` (float32
   accumulation; Eq. 2-3);
2. **head** -- in registers: ``I_n = FC2_n(ReLU(FC1_n(V)))`` for the six sub-networks and the
   softmax across streams per channel (Eq. 4), all float32;
3. **weighted sum** -- a second pass: ``D = sum_n w_n * s_n`` written once (Eq. 5).

Each stream is read exactly twice and the output written once, which is the minimum for one
launch: the weights of every element depend on the pooled vector over the *whole* sample, so
no element can be finished before every element has been read. One launch matters because a
TensorRT ahead-of-time (AOT) plugin implementation hands TensorRT exactly one compiled kernel
(``tensorrt.plugin.aot_impl`` returns one kernel name, its PTX and one launch configuration).
The price is parallelism: ``B`` programs, each using ``num_warps`` warps on one SM; at batch 1
the kernel runs on one SM (see ``benchmarks/bench_css_kernel.py`` for the measured ratio to
the unfused PyTorch ops).

The argument order is (input pointers..., int32 scalars..., output pointer), the order the AOT
path needs so no PTX rewriting is required (TensorRT's ``quickly_deployable_plugins`` sample and
``trtp.aot_impl`` docs). The kernel is checked against
:func:`dslnet_edge.model.css_reference` in float32 and float16, on the CPU with
``TRITON_INTERPRET=1`` (``tests/export/test_css_triton.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import triton
import triton.language as tl

__all__ = ["css_fused_kernel", "LaunchConfig", "launch_config", "css_triton"]


@triton.jit
def _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, n, v, offs_c, mask_c, offs_r, mask_r, C, R):
    """Logits ``I_n[c]`` of sub-network ``n``: FC(C->R) -> ReLU -> FC(R->C), float32."""
    w1 = tl.load(
        w1_ptr + n * R * C + offs_r[:, None] * C + offs_c[None, :], mask=mask_r[:, None] & mask_c[None, :], other=0.0
    ).to(tl.float32)  # [BLOCK_R, BLOCK_C]
    b1 = tl.load(b1_ptr + n * R + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    hidden = tl.maximum(tl.sum(w1 * v[None, :], axis=1) + b1, 0.0)  # [BLOCK_R]
    w2 = tl.load(
        w2_ptr + n * C * R + offs_c[:, None] * R + offs_r[None, :], mask=mask_c[:, None] & mask_r[None, :], other=0.0
    ).to(tl.float32)  # [BLOCK_C, BLOCK_R]
    b2 = tl.load(b2_ptr + n * C + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    return tl.sum(w2 * hidden[None, :], axis=1) + b2  # [BLOCK_C]


@triton.jit
def css_fused_kernel(
    s0, s1, s2, s3, s4, s5,  # six streams [B, C, H, W], contiguous, float32 or float16
    w1_ptr, b1_ptr, w2_ptr, b2_ptr,  # fc1_weight [6,R,C], fc1_bias [6,R], fc2_weight [6,C,R], fc2_bias [6,C]; float32
    C, HW, R,  # int32 scalars
    out_ptr,  # [B, C, H, W], the streams' dtype
    BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    base = pid * C * HW
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    offs_r = tl.arange(0, BLOCK_R)
    mask_r = offs_r < R
    row = base + offs_c[:, None].to(tl.int64) * HW

    # 1. pool the fused streams (Eq. 2-3): one read of every stream
    acc = tl.zeros([BLOCK_C, BLOCK_HW], dtype=tl.float32)
    for hw0 in range(0, HW, BLOCK_HW):
        offs_hw = hw0 + tl.arange(0, BLOCK_HW)
        mask = mask_c[:, None] & (offs_hw < HW)[None, :]
        ptrs = row + offs_hw[None, :]
        acc += tl.load(s0 + ptrs, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(s1 + ptrs, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(s2 + ptrs, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(s3 + ptrs, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(s4 + ptrs, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(s5 + ptrs, mask=mask, other=0.0).to(tl.float32)
    v = tl.sum(acc, axis=1) / HW.to(tl.float32)  # [BLOCK_C]

    # 2. the six sub-networks and the softmax across streams, per channel (Eq. 4)
    l0 = _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, 0, v, offs_c, mask_c, offs_r, mask_r, C, R)
    l1 = _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, 1, v, offs_c, mask_c, offs_r, mask_r, C, R)
    l2 = _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, 2, v, offs_c, mask_c, offs_r, mask_r, C, R)
    l3 = _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, 3, v, offs_c, mask_c, offs_r, mask_r, C, R)
    l4 = _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, 4, v, offs_c, mask_c, offs_r, mask_r, C, R)
    l5 = _stream_logit(w1_ptr, b1_ptr, w2_ptr, b2_ptr, 5, v, offs_c, mask_c, offs_r, mask_r, C, R)
    top = tl.maximum(tl.maximum(tl.maximum(l0, l1), tl.maximum(l2, l3)), tl.maximum(l4, l5))
    e0 = tl.exp(l0 - top)
    e1 = tl.exp(l1 - top)
    e2 = tl.exp(l2 - top)
    e3 = tl.exp(l3 - top)
    e4 = tl.exp(l4 - top)
    e5 = tl.exp(l5 - top)
    inv = 1.0 / (e0 + e1 + e2 + e3 + e4 + e5)
    a0 = (e0 * inv)[:, None]
    a1 = (e1 * inv)[:, None]
    a2 = (e2 * inv)[:, None]
    a3 = (e3 * inv)[:, None]
    a4 = (e4 * inv)[:, None]
    a5 = (e5 * inv)[:, None]

    # 3. the weighted sum (Eq. 5): the second read of every stream, one write
    for hw0 in range(0, HW, BLOCK_HW):
        offs_hw = hw0 + tl.arange(0, BLOCK_HW)
        mask = mask_c[:, None] & (offs_hw < HW)[None, :]
        ptrs = row + offs_hw[None, :]
        o = a0 * tl.load(s0 + ptrs, mask=mask, other=0.0).to(tl.float32)
        o += a1 * tl.load(s1 + ptrs, mask=mask, other=0.0).to(tl.float32)
        o += a2 * tl.load(s2 + ptrs, mask=mask, other=0.0).to(tl.float32)
        o += a3 * tl.load(s3 + ptrs, mask=mask, other=0.0).to(tl.float32)
        o += a4 * tl.load(s4 + ptrs, mask=mask, other=0.0).to(tl.float32)
        o += a5 * tl.load(s5 + ptrs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + ptrs, o.to(out_ptr.dtype.element_ty), mask=mask)


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """Compile-time block sizes and warps for one (C, R) -- shared by the JIT and AOT paths."""

    block_c: int
    block_hw: int
    block_r: int
    num_warps: int

    @property
    def constants(self) -> dict[str, int]:
        return {"BLOCK_C": self.block_c, "BLOCK_HW": self.block_hw, "BLOCK_R": self.block_r}


def launch_config(channels: int, hidden: int, *, tile_elements: int = 4096, num_warps: int = 8) -> LaunchConfig:
    """Block sizes: all channels in one tile (the head needs the whole pooled vector) and
    ``tile_elements / BLOCK_C`` spatial positions per step (>= 16 for coalesced rows)."""
    if channels < 1 or hidden < 1:
        raise ValueError(f"channels and hidden must be >= 1, got {channels}, {hidden}")
    block_c = triton.next_power_of_2(channels)
    block_hw = max(16, tile_elements // block_c)
    return LaunchConfig(block_c, block_hw, triton.next_power_of_2(hidden), num_warps)


def css_triton(streams: Sequence, w1, b1, w2, b2, *, out=None):
    """Run the fused kernel on torch tensors (the JIT plugin path and the tests).

    ``streams``: six ``[B, C, H, W]`` tensors of one dtype (float32/float16) on one device;
    weights as :func:`dslnet_edge.model.css_reference` takes them (float32).
    """
    import torch

    if len(streams) != 6:
        raise ValueError(f"the fused CSS kernel takes 6 streams, got {len(streams)}")
    first = streams[0]
    if first.dim() != 4:
        raise ValueError(f"streams must be [B, C, H, W], got shape {tuple(first.shape)}")
    for i, s in enumerate(streams):
        if s.shape != first.shape or s.dtype != first.dtype or s.device != first.device:
            raise ValueError(f"stream {i} is {tuple(s.shape)} {s.dtype} on {s.device}; stream 0 is "
                             f"{tuple(first.shape)} {first.dtype} on {first.device}")
    if first.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"streams must be float32 or float16, got {first.dtype}")
    b, c, h, w = first.shape
    s_, r, c_ = w1.shape
    if (s_, c_) != (6, c) or tuple(b1.shape) != (6, r) or tuple(w2.shape) != (6, c, r) or tuple(b2.shape) != (6, c):
        raise ValueError(f"weights {tuple(w1.shape)}, {tuple(b1.shape)}, {tuple(w2.shape)}, {tuple(b2.shape)} do not "
                         f"match 6 streams of {c} channels")
    streams = [s.contiguous() for s in streams]
    weights = [t.to(device=first.device, dtype=torch.float32).contiguous() for t in (w1, b1, w2, b2)]
    if out is None:
        out = torch.empty_like(streams[0])
    cfg = launch_config(c, r)
    css_fused_kernel[(b,)](*streams, *weights, c, h * w, r, out, **cfg.constants, num_warps=cfg.num_warps)
    return out


# ---------------------------------------------------------------------------------------------
# ahead-of-time compilation (the AOT TensorRT plugin, and a CPU-only check of the PTX)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CompiledCSS:
    """One compiled specialisation of :func:`css_fused_kernel`."""

    name: str
    ptx: str
    num_warps: int
    shared: int
    num_params: int  # kernel parameters in the PTX entry (Triton may append hidden scratch pointers)


def _signature(dtype: str, cfg: LaunchConfig) -> dict[str, str]:
    """Triton >= 3.2 signature dict: streams/output in ``dtype``, FC weights fp32, scalars i32."""
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"dtype must be 'fp32' or 'fp16', got {dtype!r}")
    sig = {}
    for name in css_fused_kernel.arg_names:
        if name in cfg.constants:
            sig[name] = "constexpr"
        elif name in ("C", "HW", "R"):
            sig[name] = "i32"
        elif name in ("w1_ptr", "b1_ptr", "w2_ptr", "b2_ptr"):
            sig[name] = "*fp32"
        else:  # s0..s5, out_ptr
            sig[name] = f"*{dtype}"
    return sig


def _ast_source(ast_source, signature: dict[str, str], constants: dict[str, int]):
    """``ASTSource`` across Triton versions: 3.2 takes ``constants=``, 3.3 and later ``constexprs=``."""
    import inspect

    params = inspect.signature(ast_source).parameters
    if "constexprs" in params:
        return ast_source(fn=css_fused_kernel, signature=signature, constexprs=constants)
    if "constants" in params:
        return ast_source(fn=css_fused_kernel, signature=signature, constants=constants)
    raise RuntimeError(f"triton {triton.__version__}: ASTSource takes neither constexprs= nor constants=; "
                       "the AOT CSS kernel is written for Triton 3.2 and later")


#: What TensorRT's AOT launcher passes to the kernel: the plugin's 10 inputs, the 3 int32 extra
#: arguments (``SymIntExprs``), the 1 output -- one pointer per parameter to ``cuLaunchKernel``.
TENSORRT_LAUNCH_PARAMS = 10 + 3 + 1


def compile_css_kernel(dtype: str, channels: int, hidden: int, *, target=None) -> CompiledCSS:
    """Compile the kernel to PTX for ``target`` (default: the current GPU), launchable by TensorRT.

    Triton 3.3 and later append two hidden pointer parameters (global and profile scratch) after
    the user arguments, which Triton's own launcher fills; TensorRT's AOT launcher passes only
    (inputs, extra scalars, outputs) -- 14 here, the kernel in Triton 3.2 -- while ``cuLaunchKernel``
    reads one pointer per parameter. NVIDIA's quickly_deployable_plugins sample pins Triton 3.2 up to
    TensorRT 10.14 and 3.5 from 10.16, so neither count can be assumed. The kernel needs no scratch
    memory (checked), so trailing parameters the PTX never reads are removed from the entry: the
    result has exactly :data:`TENSORRT_LAUNCH_PARAMS` parameters with every Triton from 3.2 on, and
    anything else is refused with a RuntimeError (the builder then falls back, saying why).
    """
    from triton.compiler import ASTSource

    cfg = launch_config(channels, hidden)
    source = _ast_source(ASTSource, _signature(dtype, cfg), cfg.constants)
    kwargs = {"target": target} if target is not None else {}
    compiled = triton.compile(source, options={"num_warps": cfg.num_warps}, **kwargs)
    meta = compiled.metadata
    for field in ("global_scratch_size", "profile_scratch_size"):
        if getattr(meta, field, 0):
            raise RuntimeError(
                f"the compiled CSS kernel needs {field}={getattr(meta, field)} bytes, which TensorRT's AOT "
                "launcher does not provide; use the JIT plugin (aot=0)"
            )
    ptx, num_params = trim_unused_params(compiled.asm["ptx"], meta.name, TENSORRT_LAUNCH_PARAMS)
    return CompiledCSS(meta.name, ptx, meta.num_warps, meta.shared, num_params)


def trim_unused_params(ptx: str, entry: str, keep: int) -> tuple[str, int]:
    """Drop the parameters after the first ``keep`` of ``.entry entry`` when the body never reads them.

    Returns (PTX, parameter count). Raises RuntimeError when the entry has fewer than ``keep``
    parameters or a trailing one is used (then TensorRT cannot launch it).
    """
    import re

    match = re.search(r"(\.entry\s+" + re.escape(entry) + r"\s*\()(.*?)(\))", ptx, re.S)
    if match is None:
        raise RuntimeError(f"the PTX has no .entry {entry}")
    params = [p.strip() for p in match.group(2).split(",") if p.strip()]
    if len(params) < keep:
        raise RuntimeError(f"the PTX entry {entry} has {len(params)} parameters; TensorRT's AOT launch passes {keep}")
    body = ptx[match.end():]
    for param in params[keep:]:
        name = param.split()[-1]
        if re.search(r"\b" + re.escape(name) + r"\b", body):
            raise RuntimeError(
                f"triton {triton.__version__} made a CSS kernel that reads the extra parameter {name} (scratch memory), "
                f"which TensorRT's AOT launch does not pass; use the JIT plugin or Triton 3.2"
            )
    if len(params) == keep:
        return ptx, keep
    declaration = ",\n".join("\t" + p for p in params[:keep])
    ptx = ptx[: match.start(2)] + "\n" + declaration + "\n" + ptx[match.end(2):]
    return ptx, keep
