"""Load test: N camera processes, each with its own Matcher, sharing ONE Milvus gallery on loopback.

    python benchmarks/bench_milvus_gallery.py                         # 4 cameras, 150 frames each, <= 60 s
    python benchmarks/bench_milvus_gallery.py --cameras 8 --frames 300 --seconds 120

It starts a Milvus server (``milvus-lite server``, bound to 127.0.0.1 on a free port, stopped at
the end), then N processes that play one camera each: people walk through several cameras, each
visit is one tracker track; every frame's crops go through ``Matcher.match`` with the track ids.
The gallery is what is measured, so the crops are embeddings already (a person's base vector plus
per-frame noise, through a pass-through "engine"): no CNN competes for the CPU.

Reports matches/s (crops decided per second, all cameras together), per-frame ``match`` latency
p50/p99, and checks the two things a shared gallery must not get wrong:

* no enrolment lost: every identity a camera created is in the gallery at the end;
* no identity created twice for one track: each (camera, track) gets at most one new identity.

Bounded in time (``--seconds`` per camera) and count (``--frames``); loopback only. The same
workload on the in-process SQLite/NumPy ``Gallery`` (one process) is printed as the baseline.
Numbers depend on the machine and on what else runs on it: say so when quoting them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 512


class PassThrough:
    """A duck-typed engine: the "crops" are embeddings (the gallery is what this benchmark measures)."""

    feature_dim = DIM

    def embed(self, rows):
        x = np.asarray(rows, np.float32).reshape(len(rows), DIM)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def plan(camera: int, people: int, frames: int, seed: int) -> list[list[tuple[int, int]]]:
    """The frames of one camera: lists of (person, track id); a person's visit is one track of 5-30 frames."""
    rng = np.random.default_rng(seed * 1000 + camera)
    schedule: list[list[tuple[int, int]]] = [[] for _ in range(frames)]
    track = 0
    start = 0
    while start < frames:
        for _ in range(int(rng.integers(1, 4))):  # 1-3 people enter together
            person, length = int(rng.integers(people)), int(rng.integers(5, 31))
            track += 1
            for f in range(start, min(frames, start + length)):
                if all(p != person for p, _ in schedule[f]):
                    schedule[f].append((person, track))
        start += int(rng.integers(2, 8))
    return schedule


def camera_worker(args) -> dict:
    camera, uri, people, frames, seconds, seed = args
    import dslnet_edge
    from dslnet_edge.gallery import Gallery

    base = np.random.default_rng(seed).standard_normal((people, DIM)).astype(np.float32)
    noise = np.random.default_rng(seed + 1 + camera)
    if uri == "memory":
        gallery = Gallery(DIM)
    else:
        from dslnet_edge.milvus_gallery import MilvusGallery

        gallery = MilvusGallery(uri)
    matcher = dslnet_edge.Matcher(PassThrough(), gallery)
    created: dict[int, list[str]] = {}
    latencies, crops = [], 0
    deadline = time.monotonic() + seconds
    started = time.time()
    for f, visible in enumerate(plan(camera, people, frames, seed)):
        if time.monotonic() > deadline:
            break
        if not visible:
            continue
        rows = [base[p] + 0.35 * noise.standard_normal(DIM).astype(np.float32) for p, _ in visible]
        t0 = time.perf_counter()
        matches = matcher.match(rows, camera=f"cam{camera}", track_ids=[t for _, t in visible], timestamp=1e6 + f)
        latencies.append(time.perf_counter() - t0)
        crops += len(rows)
        for m in matches:
            if m.is_new:
                created.setdefault(m.track_id, []).append(m.identity)
    return {"camera": camera, "latencies": latencies, "crops": crops, "created": created, "frames": len(latencies),
            "window": (started, time.time())}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_milvus(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    from pymilvus import MilvusClient

    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited with status {process.returncode}")
        try:
            MilvusClient(uri=uri, timeout=2).list_collections()
            return process, uri
        except Exception:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("milvus-lite server not ready after 60 s") from None
            time.sleep(0.5)


def run_load(uri: str, cameras: int, people: int, frames: int, seconds: float, seed: int) -> dict:
    jobs = [(c, uri, people, frames, seconds, seed) for c in range(cameras)]
    if cameras == 1:
        results = [camera_worker(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(cameras) as pool:
            results = pool.map(camera_worker, jobs)
    # from the first camera's first frame to the last camera's last (process start-up left out)
    wall = max(r["window"][1] for r in results) - min(r["window"][0] for r in results)
    latencies = np.concatenate([r["latencies"] for r in results]) * 1000
    crops = sum(r["crops"] for r in results)
    twice = [(r["camera"], t, names) for r in results for t, names in r["created"].items() if len(names) > 1]
    created = {name for r in results for names in r["created"].values() for name in names}
    return {"wall": wall, "latencies": latencies, "crops": crops, "twice": twice, "created": created,
            "frames": sum(r["frames"] for r in results)}


def report(name: str, out: dict, present: set[str] | None) -> None:
    lat = out["latencies"]
    lost = sorted(out["created"] - present) if present is not None else []
    print(f"{name:<34} {out['frames']:>5} frames {out['crops']:>6} crops  {out['crops'] / out['wall']:>7.1f} matches/s  p50 {np.percentile(lat, 50):6.1f} ms  p99 {np.percentile(lat, 99):6.1f} ms  "
          f"identities created {len(out['created'])}, lost {len(lost)}, tracks with 2+ new identities {len(out['twice'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--people", type=int, default=60, help="distinct people walking through the cameras")
    parser.add_argument("--frames", type=int, default=150, help="frames per camera (upper bound)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per camera (upper bound)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (1 <= args.cameras <= 32 and args.frames >= 1 and 0 < args.seconds <= 600 and args.people >= 1):
        parser.error("need 1 <= --cameras <= 32, --frames >= 1, 0 < --seconds <= 600, --people >= 1")
    print(f"{args.cameras} camera processes, {args.people} people, up to {args.frames} frames / {args.seconds:g} s per camera; "
          f"{os.cpu_count()} CPUs (shared with whatever else runs here)")
    baseline = run_load("memory", 1, args.people, args.frames, args.seconds, args.seed)
    report("in-process Gallery, 1 camera", baseline, None)
    with tempfile.TemporaryDirectory() as tmp:
        server, uri = start_milvus(Path(tmp) / "milvus")
        try:
            from dslnet_edge.milvus_gallery import MilvusGallery

            MilvusGallery(uri, feature_dim=DIM, capacity=10_000).close()  # created once, before the cameras start
            single = run_load(uri, 1, args.people, args.frames, args.seconds, args.seed)
            with MilvusGallery(uri) as g:
                present = set(g.identities())
                g.clear()
            report("Milvus server, 1 camera", single, present)
            load = run_load(uri, args.cameras, args.people, args.frames, args.seconds, args.seed)
            with MilvusGallery(uri) as g:
                present = set(g.identities())
            report(f"Milvus server, {args.cameras} camera processes", load, present)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    failed = bool(load["twice"]) or bool(load["created"] - present)
    print("FAILED: enrolments lost or identities created twice for a track" if failed else
          "ok: no enrolment lost, no identity created twice for a track")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
