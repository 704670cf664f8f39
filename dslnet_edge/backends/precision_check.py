"""The load-time check of a reduced precision against FP32, on a fixed batch of person-like crops.

A backend that runs a model in bf16 (or runs an INT8 Q/DQ graph) embeds the same fixed batch in
the reduced precision and in the reference, and compares rows by cosine similarity
(:func:`min_row_cosine`). The crops come from :func:`person_like_crops`: seeded, procedurally drawn
figures (head, torso, arms, legs in random clothing colours on a textured background, with sensor
noise and blur), so the check needs no data files, gives the same numbers on every machine, and
exercises the network with the smooth regions and edges of real detector crops (uniform random
noise, the usual stand-in, is the least photo-like input there is). numpy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

from dslnet_edge._checks import positive_int

__all__ = ["CHECK_MIN_COSINE", "CHECK_BATCH", "person_like_crops", "min_row_cosine"]

#: The smallest per-crop cosine between a reduced precision and FP32 that a backend accepts.
CHECK_MIN_COSINE = 0.999
#: How many crops the load-time check embeds (one batch).
CHECK_BATCH = 8


def person_like_crops(n: int = CHECK_BATCH, *, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 BGR crops of drawn people, detector-sized (160-400 px high, aspect 0.35-0.5); deterministic per seed."""
    n = positive_int(n, "n")
    rng = np.random.default_rng(seed)
    return [_one_person(rng) for _ in range(n)]


def _one_person(rng: np.random.Generator) -> np.ndarray:
    h = int(rng.integers(160, 401))
    w = max(48, int(h * rng.uniform(0.35, 0.5)))
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    top, bottom = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    coarse = rng.normal(0.0, 20.0, (h // 16 + 2, w // 16 + 2, 3))
    img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)  # background texture
    cx = w / 2 + rng.normal(0.0, w * 0.05)
    skin = tuple(float(v) for v in rng.uniform((60, 90, 140), (140, 170, 230)))
    shirt = tuple(float(v) for v in rng.uniform(0, 256, 3))
    trousers = tuple(float(v) for v in rng.uniform(0, 200, 3))
    shoes = tuple(float(v) for v in rng.uniform(0, 80, 3))
    head_y, head_r = int(h * 0.1), max(4, int(h * 0.055))
    torso_top, torso_bottom = int(h * 0.17), int(h * 0.52)
    half = max(6, int(w * rng.uniform(0.18, 0.26)))
    leg_gap = max(2, int(w * 0.04))
    # legs, shoes, torso, arms, head: filled shapes with anti-aliased edges
    for side in (-1, 1):
        x0 = int(cx + side * leg_gap) if side > 0 else int(cx - leg_gap - half * 0.8)
        cv2.rectangle(img, (x0, torso_bottom), (int(x0 + half * 0.8), int(h * 0.93)), trousers, -1, cv2.LINE_AA)
        cv2.rectangle(img, (x0, int(h * 0.93)), (int(x0 + half * 0.9), int(h * 0.97)), shoes, -1, cv2.LINE_AA)
        arm_x = int(cx + side * (half + max(2, w * 0.05)))
        cv2.line(img, (int(cx + side * half), torso_top + 4), (arm_x, int(h * 0.5)), shirt, max(3, int(w * 0.08)), cv2.LINE_AA)
        cv2.circle(img, (arm_x, int(h * 0.51)), max(2, int(w * 0.04)), skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), (torso_top + torso_bottom) // 2), (half, (torso_bottom - torso_top) // 2), 0, 0, 360,
                shirt, -1, cv2.LINE_AA)
    if rng.random() < 0.5:  # a stripe or logo on half of the shirts
        stripe = tuple(float(v) for v in rng.uniform(0, 256, 3))
        y = int(rng.uniform(torso_top + 6, torso_bottom - 6))
        cv2.rectangle(img, (int(cx - half * 0.8), y), (int(cx + half * 0.8), y + max(2, h // 40)), stripe, -1, cv2.LINE_AA)
    cv2.circle(img, (int(cx), head_y + head_r // 2), head_r, skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), head_y), (head_r, max(2, head_r // 2)), 0, 180, 360,
                tuple(float(v) for v in rng.uniform(0, 90, 3)), -1, cv2.LINE_AA)  # hair
    img += rng.normal(0.0, 5.0, img.shape)  # sensor noise
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity between corresponding rows of two ``[N, D]`` arrays (float64 maths)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"need two equal non-empty [N, D] arrays, got {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or (na == 0).any() or (nb == 0).any():
        return float("nan")  # NaN/inf or zero rows: no direction, the check fails (nan < x is False)
    return float(np.min(np.sum(a * b, axis=1) / (na * nb)))
