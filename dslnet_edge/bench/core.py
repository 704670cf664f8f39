"""What ``python -m dslnet_edge.bench`` measures, as functions returning plain dicts (the report formats them).

Sections, all in one run on one machine:

* **models**: crops/s and p50/p99 ms per call at each batch, for DSLNet on every available backend
  and precision and for each peer; FLOPs per crop (counted on the graph: 2 x multiply-adds of
  every convolution and matrix product) and the row's fraction of its runtime's FP32 peak;
  Rank-1/mAP on ``--data-root`` per model and precision.
* **peak**: a large square FP32 GEMM timed through ONNX Runtime and through OpenVINO (the
  runtimes the rows use; never numpy, whose BLAS setting here may differ).
* **gallery**: :class:`~dslnet_edge.gallery.Gallery` search at 1k/100k/1M exemplars, numpy vs faiss.
* **video**: frames/s by stage (decode, detect, embed, match) on a real video: the bench's own
  minimal pipeline (OpenCV HOG people detector, Engine, Matcher), since dslnet_edge must not
  import ``samples``.

Timing measures the backend's ``infer`` on preprocessed batches (the model alone); preprocessing
per crop is reported separately. Batches are person-like crops
(:func:`~dslnet_edge.backends.precision_check.person_like_crops`), so reduced precisions see
realistic activations.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dslnet_edge.backends.base import Backend
from dslnet_edge.backends.precision_check import person_like_crops
from dslnet_edge.bench.peers import PEERS, peer_backend
from dslnet_edge.preprocessing import preprocess
from dslnet_edge.spec import InputSpec

__all__ = ["BenchConfig", "Candidate", "run_bench", "time_backend", "peak_gflops", "count_flops", "rank_accuracy",
           "bench_gallery", "bench_video", "machine_info"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything one bench run needs; ``quick()`` and ``full()`` give the two presets."""

    model: Path | None = None  # FP32 DSLNet ONNX (None: the bundled demo ONNX)
    checkpoint: Path | None = None  # DSLNet .pt for the PyTorch eager rows (None: the bundled demo checkpoint)
    int8_onnx: Path | None = None  # the calibration's Q/DQ ONNX (None: no INT8 rows)
    torch: bool = True  # a PyTorch eager row from ``checkpoint`` (the same network as ``model``: FLOPs come from it)
    engines: tuple[Path, ...] = ()  # TensorRT engines (rows when TensorRT and a GPU are present)
    peers_dir: Path | None = None
    data_root: Path | None = None  # Market-1501 layout: query/ + bounding_box_test/
    video: Path | None = None
    batches: tuple[int, ...] = (1, 8, 32)
    seconds: float = 3.0  # per model and batch
    min_calls: int = 3
    threads: int = 0  # 0: each runtime's default (all cores)
    gemm_size: int = 4096
    gallery_sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    gallery_queries: int = 8
    max_gallery_gb: float = 10.0  # gallery sizes whose estimated peak memory exceeds this are skipped
    eval_identities: int = 0  # 0: every identity of --data-root; else the first N (sorted)
    video_frames: int = 300
    sections: frozenset[str] = frozenset({"models", "peak", "gallery", "video"})
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batches):
            raise ValueError(f"batches must be positive integers, got {self.batches}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        for name in ("min_calls", "gemm_size", "gallery_queries", "video_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.threads < 0 or self.eval_identities < 0:
            raise ValueError("threads and eval-identities must be >= 0")
        if any(s < 1 for s in self.gallery_sizes):
            raise ValueError(f"gallery sizes must be >= 1, got {self.gallery_sizes}")
        unknown = set(self.sections) - {"models", "peak", "gallery", "video"}
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; choose from models, peak, gallery, video")

    @classmethod
    def quick_preset(cls, **overrides) -> BenchConfig:
        """About a minute on a 2-core CPU: short timings, 1k/100k gallery, 25 identities, 40 video frames."""
        base = dict(seconds=0.5, min_calls=2, gemm_size=2048, gallery_sizes=(1_000, 100_000), eval_identities=25,
                    video_frames=40, quick=True)
        return cls(**{**base, **overrides})


@dataclasses.dataclass
class Candidate:
    """One row family: a model on one runtime in one precision, built on demand."""

    model: str
    runtime: str
    precision: str
    build: Callable[[], Backend]
    flops_source: Path | None = None  # the graph whose FLOPs count (FP32 for INT8 rows)
    note: str = ""


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def time_backend(backend: Backend, batch: np.ndarray, *, seconds: float, min_calls: int = 3) -> dict:
    """Crops/s and p50/p99 ms per call of ``backend.infer(batch)`` (after two warm-up calls).

    A model with a smaller fixed batch (``backend.max_batch``) gets the batch in slices, as the
    Engine would give it; a "call" is then the whole batch.
    """
    step = backend.max_batch or batch.shape[0]

    def call():
        for start in range(0, batch.shape[0], step):
            backend.infer(batch[start : start + step])

    call()
    call()
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    total = float(np.sum(times))
    return {
        "batch": int(batch.shape[0]),
        "calls": len(times),
        "crops_per_s": batch.shape[0] * len(times) / total,
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p99_ms": 1000 * float(np.percentile(times, 99)),
    }


def _input_batch(spec: InputSpec, n: int) -> np.ndarray:
    return preprocess(person_like_crops(n, seed=1), spec)


# ---------------------------------------------------------------------------------------------
# FLOPs and the FP32 peak
# ---------------------------------------------------------------------------------------------
def count_flops(path: str | os.PathLike, spec: InputSpec) -> float | None:
    """FLOPs of one crop: 2 x multiply-adds of every (group) convolution and matrix product, via OpenVINO's graph.

    None when OpenVINO is not installed or the graph cannot be read.
    """
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        model = ov.Core().read_model(str(path))
        model.reshape({model.inputs[0]: ov.PartialShape([1, 3, spec.height, spec.width])})
    except Exception:
        return None
    macs = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Convolution", "GroupConvolution", "MatMul"):
            out = op.get_output_partial_shape(0)
            weights = op.get_input_partial_shape(1)
            if not (out.is_static and weights.is_static):
                continue
            out, weights = out.to_shape(), weights.to_shape()
            if kind == "Convolution":  # out [1, Co, H, W] x weights [Co, Ci, kh, kw]: per output element Ci*kh*kw
                macs += int(np.prod(out)) * int(np.prod(list(weights)[1:]))
            elif kind == "GroupConvolution":  # weights [G, Co/G, Ci/G, kh, kw]
                macs += int(np.prod(out)) * int(np.prod(list(weights)[2:]))
            else:
                a = op.get_input_partial_shape(0).to_shape()
                transpose_a = op.get_attributes().get("transpose_a", False)
                macs += int(np.prod(out)) * int(a[-2] if transpose_a else a[-1])
    return 2.0 * macs


def _gemm_onnx(n: int) -> bytes | None:
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    b = (np.random.default_rng(0).standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def peak_gflops(n: int, *, threads: int = 0, repeats: int = 4) -> dict:
    """FP32 GFLOP/s of an ``n x n x n`` MatMul in ONNX Runtime and in OpenVINO (f32), best of ``repeats``."""
    out: dict[str, dict] = {}
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    flops = 2.0 * n**3
    blob = _gemm_onnx(n)
    if blob is None:
        out["onnxruntime"] = {"note": "needs the onnx package to build the GEMM graph"}
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = _best_gflops(lambda: session.run(None, {"a": a}), flops, repeats, n)
        with tempfile.TemporaryDirectory(prefix="dslnet_bench_") as tmp:
            path = Path(tmp) / "gemm.onnx"
            path.write_bytes(blob)
            try:
                import openvino as ov
            except ImportError:
                out["openvino"] = {"note": "openvino not installed"}
            else:
                config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
                if threads:
                    config["INFERENCE_NUM_THREADS"] = threads
                compiled = ov.Core().compile_model(str(path), "CPU", config)
                request = compiled.create_infer_request()
                out["openvino"] = _best_gflops(lambda: request.infer({0: a}), flops, repeats, n)
    return out


def _best_gflops(fn, flops: float, repeats: int, n: int) -> dict:
    fn()
    best = min(_seconds(fn) for _ in range(repeats))
    return {"gflops": flops / best / 1e9, "n": n, "best_ms": 1000 * best}


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# accuracy: the same path as train.peers (preprocess per spec -> embed -> cosine -> Market-1501 ranking)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EvalImages:
    """Query and gallery crops (BGR) with identities and cameras, read once and shared by every row."""

    query: list[np.ndarray]
    query_ids: np.ndarray
    query_cams: np.ndarray
    gallery: list[np.ndarray]
    gallery_ids: np.ndarray
    gallery_cams: np.ndarray
    root: str

    @classmethod
    def load(cls, root: str | os.PathLike, *, identities: int = 0) -> EvalImages:
        """``root/query`` and ``root/bounding_box_test`` (Market-1501 names); the first ``identities`` pids if > 0."""
        from dslnet_edge.threshold import read_labelled_crops

        root = Path(root)
        sets = []
        for folder in ("query", "bounding_box_test"):
            if not (root / folder).is_dir():
                raise FileNotFoundError(f"data root {root} has no {folder}/ folder (Market-1501 layout: query/ + bounding_box_test/)")
            items = [(p, int(i), int(c[1:])) for p, i, c in read_labelled_crops([root / folder]) if c is not None]
            sets.append(items)
        keep = sorted({i for _, i, _ in sets[0]})
        if identities:
            keep = keep[:identities]
        keep_set = set(keep)
        arrays = []
        for items in sets:
            items = [it for it in items if it[1] in keep_set]
            if not items:
                raise FileNotFoundError(f"data root {root}: no labelled images for the chosen identities")
            arrays.append(([_read_bgr(p) for p, _, _ in items], np.array([i for _, i, _ in items]),
                           np.array([c for _, _, c in items])))
        (q, qi, qc), (g, gi, gc) = arrays
        return cls(q, qi, qc, g, gi, gc, str(root))


def _read_bgr(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path} is not a readable image")
    return image


def _embed_all(backend: Backend, images: list[np.ndarray], batch: int = 32) -> np.ndarray:
    chunks = []
    step = min(batch, backend.max_batch or batch)
    for start in range(0, len(images), step):
        chunks.append(np.asarray(backend.infer(preprocess(images[start : start + step], backend.spec)), np.float32))
    return np.concatenate(chunks)


def rank_accuracy(backend: Backend, data: EvalImages) -> dict:
    """Rank-1/mAP of ``backend`` on ``data`` (cosine distance, Market-1501 protocol from dslnet_edge.metrics)."""
    from dslnet_edge.metrics import cosine_distance, evaluate_rank

    q, g = _embed_all(backend, data.query), _embed_all(backend, data.gallery)
    result = evaluate_rank(cosine_distance(q, g), data.query_ids, data.gallery_ids, data.query_cams, data.gallery_cams)
    return {"rank1": result.rank1, "mAP": result.mAP, "queries": len(data.query), "gallery": len(data.gallery)}


# ---------------------------------------------------------------------------------------------
# gallery search
# ---------------------------------------------------------------------------------------------
def bench_gallery(sizes, *, queries: int = 8, dim: int = 512, per_identity: int = 4, max_gb: float = 10.0,
                  repeats: int = 5) -> list[dict]:
    """Gallery.search ms per call (top-5, ``queries`` queries) at each exemplar count, numpy vs faiss."""
    from dslnet_edge.gallery import Gallery

    try:
        import faiss  # noqa: F401

        indexes = ("numpy", "faiss")
    except ImportError:
        indexes = ("numpy",)
    rng = np.random.default_rng(2)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    rows = []
    for size in sizes:
        row: dict = {"exemplars": int(size), "queries": queries, "dim": dim}
        identities = max(1, size // per_identity)
        # measured peak for 1M x 512-d with faiss: 8.4 GB RSS (source features, the gallery storage as it grows,
        # faiss index copy); galleries are built one at a time
        need_gb = identities * per_identity * dim * 4 * (4 if "faiss" in indexes else 3) / 1e9
        if need_gb > max_gb:
            row["note"] = f"skipped: needs ~{need_gb:.1f} GB (> --max-gallery-gb {max_gb:g})"
            rows.append(row)
            continue
        feats = rng.standard_normal((identities, per_identity, dim)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=2, keepdims=True)
        for name in indexes:
            gallery = Gallery(dim, max_exemplars=per_identity, capacity=identities, index=name)
            for i in range(identities):
                gallery.add(f"id{i}", feats[i])
            first = _seconds(lambda g=gallery: g.search(q, 5))  # faiss builds its index on the first search
            row[f"{name}_ms"] = 1000 * min(_seconds(lambda g=gallery: g.search(q, 5)) for _ in range(repeats))
            if name == "faiss":
                row["faiss_first_search_ms"] = 1000 * first
            del gallery
        del feats
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# end-to-end video
# ---------------------------------------------------------------------------------------------
#: HOG's 64x128 window holds a ~96 px tall person; frames are scaled so that a person of
#: ``min_person_height`` frame pixels becomes 96 px (as samples.detect.HogDetector does; 192 is
#: what samples/README uses on the shared videos).
_HOG_PERSON_PX = 96


def bench_video(path: str | os.PathLike, engine_factory: Callable[[], object], *, frames: int = 300,
                min_person_height: int = 192) -> dict:
    """Frames/s by stage on a real video: decode (OpenCV), detect (HOG), embed (Engine), match (Matcher).

    ``frames`` frames are sampled evenly across the video (the frames between are skipped with
    ``grab()``, untimed), so a short run still sees the people of a long video.
    """
    import cv2

    from dslnet_edge.matcher import Matcher

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"video {path} cannot be opened")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    stride = max(1, count // frames) if count > 0 else 1
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    engine = _TimedEngine(engine_factory())
    matcher = Matcher(engine)
    stages = {"decode": 0.0, "detect": 0.0, "embed": 0.0, "match": 0.0}
    n = crops_total = 0
    try:
        while n < frames:
            if n and not all(capture.grab() for _ in range(stride - 1)):
                break
            t0 = time.perf_counter()
            ok, frame = capture.read()
            if not ok:
                break
            t1 = time.perf_counter()
            scale = min(1.0, _HOG_PERSON_PX / min_person_height)
            small = cv2.resize(frame, None, fx=scale, fy=scale) if scale < 1 else frame
            boxes, _ = hog.detectMultiScale(small, winStride=(4, 4), padding=(8, 8), scale=1.05)
            crops = [frame[int(y / scale) : int((y + h) / scale), int(x / scale) : int((x + w) / scale)]
                     for x, y, w, h in boxes]
            crops = [c for c in crops if c.size]
            t2 = time.perf_counter()
            engine.seconds = 0.0
            matcher.match(crops, camera="bench", timestamp=n / 25.0)
            t3 = time.perf_counter()
            stages["decode"] += t1 - t0
            stages["detect"] += t2 - t1
            stages["embed"] += engine.seconds
            stages["match"] += (t3 - t2) - engine.seconds
            n += 1
            crops_total += len(crops)
    finally:
        capture.release()
        engine.close()
    if n == 0:
        raise ValueError(f"video {path} gave no frames")
    total = sum(stages.values())
    return {
        "video": str(path), "frames": n, "frame_stride": stride, "crops": crops_total, "fps": n / total,
        "stages_ms_per_frame": {k: 1000 * v / n for k, v in stages.items()},
        "detector": f"OpenCV HOG people detector (stride 4, frames scaled by {scale:.2f}: min person height "
                    f"{min_person_height} px)",
    }


class _TimedEngine:
    """An Engine that adds the seconds spent in ``embed`` to ``seconds`` (to split embed from match)."""

    def __init__(self, engine):
        self.engine = engine
        self.feature_dim = engine.feature_dim
        self.seconds = 0.0

    def embed(self, crops):
        t0 = time.perf_counter()
        try:
            return self.engine.embed(crops)
        finally:
            self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.engine.close()


# ---------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------
def machine_info(threads: int) -> dict:
    """CPU model, cores, flags that matter, library versions, threads, date."""
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "threads": threads or "runtime default (all cores)",
        "versions": {},
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        info["cpu_flags"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags]
    except OSError:
        pass
    for module in ("numpy", "onnxruntime", "openvino", "torch", "faiss", "cv2", "tensorrt"):
        try:
            mod = __import__(module)
            info["versions"][module] = getattr(mod, "__version__", "?")
        except Exception:
            info["versions"][module] = None
    try:
        load = os.getloadavg()
        info["load_average_1m"] = round(load[0], 2)
    except OSError:
        pass
    return info


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def _candidates(config: BenchConfig) -> tuple[list[Candidate], list[str]]:
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dslnet_edge.backends.openvino_backend import OpenVinoBackend, openvino_available
    from dslnet_edge.weights import DEMO_CHECKPOINT, DEMO_ONNX

    notes: list[str] = []
    threads = config.threads or None
    model = config.model or DEMO_ONNX
    if not Path(model).is_file():
        raise FileNotFoundError(f"DSLNet ONNX {model} does not exist (pass --model)")
    cands = [Candidate("DSLNet", "onnxruntime", "fp32", lambda: OnnxRuntimeBackend(model, intra_op_threads=threads), model)]
    if openvino_available():
        for precision in ("f32", "bf16"):
            cands.append(Candidate("DSLNet", "openvino", precision,
                                   lambda p=precision: OpenVinoBackend(model, precision=p, intra_op_threads=threads), model))
    else:
        notes.append("OpenVINO rows skipped: openvino not installed (pip install 'dslnet-edge[openvino]')")
    if config.int8_onnx is not None:
        int8 = config.int8_onnx
        cands.append(Candidate("DSLNet", "onnxruntime", "int8", lambda: OnnxRuntimeBackend(int8, intra_op_threads=threads), model))
        if openvino_available():
            cands.append(Candidate("DSLNet", "openvino", "int8", lambda: OpenVinoBackend(int8, intra_op_threads=threads), model))
    else:
        notes.append("INT8 rows skipped: no --int8-onnx (make the Q/DQ ONNX with `python -m calibration`)")
    checkpoint = config.checkpoint or DEMO_CHECKPOINT
    if not config.torch:
        notes.append("PyTorch eager row skipped (--no-torch)")
    elif importlib.util.find_spec("torch") is None:
        notes.append("PyTorch eager row skipped: torch not installed")
    elif not Path(checkpoint).is_file():
        notes.append(f"PyTorch eager row skipped: no checkpoint at {checkpoint}")
    else:
        from dslnet_edge.backends.torch_backend import TorchBackend

        def build_torch(threads=threads, checkpoint=checkpoint):
            if threads:
                import torch

                torch.set_num_threads(threads)
            return TorchBackend(checkpoint)

        cands.append(Candidate("DSLNet", "torch", "fp32", build_torch, model))
    if config.engines:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            notes.append("TensorRT rows skipped: tensorrt not installed")
        else:
            from dslnet_edge.engine import Engine

            for engine in config.engines:
                cands.append(Candidate("DSLNet", "tensorrt", "engine", lambda e=engine: Engine(e).backend, model,
                                       note=str(engine)))
    else:
        notes.append("TensorRT rows skipped: no --engine given (and no TensorRT/GPU on a CPU machine)")
    if config.peers_dir is not None:
        for peer in PEERS:
            path = Path(config.peers_dir) / peer.file
            if not path.is_file():
                notes.append(f"{peer.short} skipped: {path} not found")
                continue
            if peer.runtime == "openvino" and not openvino_available():
                notes.append(f"{peer.short} skipped: needs openvino")
                continue
            cands.append(Candidate(peer.short, peer.runtime, "auto" if peer.runtime == "openvino" else "fp32",
                                   lambda p=peer: peer_backend(p, config.peers_dir, threads=config.threads), path))
    else:
        notes.append("peer rows skipped: no peers folder (--peers-dir, default ../shared/peers/openvino-omz)")
    return cands, notes


def run_bench(config: BenchConfig, *, progress: Callable[[str], None] = log.info) -> dict:
    """Run the chosen sections; return the JSON-able result (see :mod:`dslnet_edge.bench.report`)."""
    started = time.perf_counter()
    result: dict = {"machine": machine_info(config.threads), "config": _config_dict(config), "notes": []}
    if "peak" in config.sections:
        progress(f"FP32 peak: {config.gemm_size}^3 GEMM")
        result["peak"] = peak_gflops(config.gemm_size, threads=config.threads)
    if "models" in config.sections:
        result["rows"], result["accuracy"] = _bench_models(config, result, progress)
    if "gallery" in config.sections:
        progress(f"gallery search at {list(config.gallery_sizes)} exemplars")
        result["gallery"] = bench_gallery(config.gallery_sizes, queries=config.gallery_queries, max_gb=config.max_gallery_gb)
    if "video" in config.sections:
        if config.video is None:
            result["notes"].append("video section skipped: no --video (default: ../shared/data/videos/*.mp4)")
        else:
            from dslnet_edge.engine import Engine

            progress(f"end-to-end video: {config.video}")
            model = config.model
            result["video"] = bench_video(config.video, lambda: Engine(model, intra_op_threads=config.threads or None),
                                          frames=config.video_frames)
            result["video"]["engine"] = "Engine() default backend for the DSLNet ONNX"
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _bench_models(config: BenchConfig, result: dict, progress) -> tuple[list[dict], list[dict]]:
    cands, notes = _candidates(config)
    result["notes"].extend(notes)
    data = None
    if config.data_root is not None:
        progress(f"reading evaluation images from {config.data_root}")
        data = EvalImages.load(config.data_root, identities=config.eval_identities)
        result["eval_set"] = {"root": data.root, "queries": len(data.query), "gallery": len(data.gallery),
                              "identities": int(len(set(data.query_ids.tolist())))}
    else:
        result["notes"].append("accuracy columns empty: no --data-root (Market-1501 layout)")
    peaks = result.get("peak", {})
    flops_cache: dict[tuple[str, InputSpec], float | None] = {}
    rows, accuracy = [], []
    for cand in cands:
        label = f"{cand.model} {cand.runtime} {cand.precision}"
        progress(f"loading {label}")
        try:
            t0 = time.perf_counter()
            backend = cand.build()
            load_s = time.perf_counter() - t0
        except Exception as exc:  # one row's failure (a peer that will not load) must not lose the others
            result["notes"].append(f"{label} skipped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        try:
            _measure_candidate(cand, backend, load_s, config, data, peaks, flops_cache, rows, accuracy, progress)
        except Exception as exc:  # keep the other rows; the failure is named in the notes
            result["notes"].append(f"{label} stopped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            backend.close()
    return rows, accuracy


def _measure_candidate(cand, backend, load_s, config, data, peaks, flops_cache, rows, accuracy, progress) -> None:
    label = f"{cand.model} {cand.runtime} {cand.precision}"
    precision = _effective_precision(cand, backend)
    key = (str(cand.flops_source), backend.spec)
    if key not in flops_cache:
        flops_cache[key] = count_flops(cand.flops_source, backend.spec) if cand.flops_source else None
    flops = flops_cache[key]
    peak = peaks.get(cand.runtime, {}).get("gflops") if cand.runtime in ("onnxruntime", "openvino") else None
    note = getattr(backend, "note", "") or cand.note
    for b in config.batches:
        progress(f"timing {label} batch {b}")
        timing = time_backend(backend, _input_batch(backend.spec, b), seconds=config.seconds, min_calls=config.min_calls)
        gflops = timing["crops_per_s"] * flops / 1e9 if flops else None
        rows.append({
            "model": cand.model, "runtime": cand.runtime, "precision": precision, **timing,
            "gflop_per_crop": flops / 1e9 if flops else None,
            "gflops": gflops,
            "fraction_of_fp32_peak": gflops / peak if gflops and peak else None,
            "load_s": load_s, "note": note,
        })
    entry = {"model": cand.model, "runtime": cand.runtime, "precision": precision,
             "check_cosine": getattr(backend, "check_cosine", None)}
    if data is not None:
        progress(f"evaluating {label}")
        entry.update(rank_accuracy(backend, data))
    accuracy.append(entry)


def _effective_precision(cand: Candidate, backend: Backend) -> str:
    if cand.runtime == "openvino":
        return ("int8+" if getattr(backend, "int8", False) else "") + getattr(backend, "precision", cand.precision)
    return cand.precision


def _config_dict(config: BenchConfig) -> dict:
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (tuple, frozenset)):
            value = sorted(str(v) for v in value) if isinstance(value, frozenset) else [
                str(v) if isinstance(v, Path) else v for v in value]
        out[field.name] = value
    return out
