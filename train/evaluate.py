"""Evaluation: embeddings through the runtime's preprocessing, Rank-k / mAP / CMC, pictures.

``python -m train.evaluate --checkpoint runs/x/best.pt --data-root ../shared/data/cuhk03-pair1``

Protocol (paper section 4.2): single query, Market-1501 protocol (a gallery image of the query's
identity taken by the query's camera is removed), cosine distance on the L2-normalized 512-d
embeddings, optionally k-reciprocal re-ranking. Embeddings are computed from the original image
files through :func:`dslnet_edge.preprocess.preprocess` - the same pixels the deployed model gets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from dslnet_edge.metrics import RankResult, cosine_distance, evaluate_rank
from dslnet_edge.preprocess import preprocess
from dslnet_edge.spec import InputSpec
from train.data import ReidImage, read_bgr

__all__ = ["EvalSet", "Embedder", "embed_images", "torch_embedder", "evaluate_embeddings", "evaluate_sets"]

#: A function from a float32 ``[N, 3, H, W]`` batch (already preprocessed) to ``[N, D]`` embeddings.
Embedder = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass
class EvalSet:
    """Query or gallery images decoded once (original size, BGR) with identities and cameras."""

    images: list[np.ndarray]
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str]

    @classmethod
    def load(cls, items: Sequence[ReidImage], *, limit: int = 0) -> EvalSet:
        items = list(items)[:limit] if limit > 0 else list(items)
        return cls(
            images=[read_bgr(im.path) for im in items],
            pids=np.array([im.pid for im in items], dtype=np.int64),
            camids=np.array([im.camid for im in items], dtype=np.int64),
            paths=[im.path for im in items],
        )

    def __len__(self) -> int:
        return len(self.images)


def embed_images(images: Sequence[np.ndarray], spec: InputSpec, embed: Embedder, *, batch_size: int = 64) -> np.ndarray:
    """``[N, D]`` float32 embeddings of BGR crops, preprocessed per ``spec`` in batches."""
    if not len(images):
        raise ValueError("no images to embed")
    buffer = np.empty((min(batch_size, len(images)), *spec.input_shape), dtype=np.float32)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = preprocess(list(images[start : start + batch_size]), spec, out=buffer)
        out = np.asarray(embed(batch), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ValueError(f"the model returned shape {out.shape} for a batch of {len(batch)}; expected [N, D]")
        chunks.append(out.copy())
    return np.concatenate(chunks)


def torch_embedder(model, *, device=None, channels_last: bool = True) -> Embedder:
    """Wrap a DSLNet (put in eval mode) as an :data:`Embedder`."""
    import torch

    device = device or next(model.parameters()).device
    model.eval()

    def embed(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return model(x).float().cpu().numpy()

    return embed


def evaluate_embeddings(
    query: np.ndarray,
    gallery: np.ndarray,
    query_set: EvalSet,
    gallery_set: EvalSet,
    *,
    rerank: bool = False,
    max_rank: int = 50,
) -> tuple[RankResult, np.ndarray]:
    """Cosine distances (optionally k-reciprocal re-ranked) -> :class:`RankResult`, and the distances."""
    dist = cosine_distance(query, gallery)
    if rerank:
        from train.rerank import k_reciprocal_rerank

        dist = k_reciprocal_rerank(dist, cosine_distance(query, query), cosine_distance(gallery, gallery))
    result = evaluate_rank(dist, query_set.pids, gallery_set.pids, query_set.camids, gallery_set.camids,
                           max_rank=max_rank)
    return result, dist


def evaluate_sets(
    embed: Embedder,
    spec: InputSpec,
    query_set: EvalSet,
    gallery_set: EvalSet,
    *,
    batch_size: int = 64,
    rerank: bool = False,
) -> RankResult:
    """Embed both sets with ``embed`` and rank: the one evaluation path for checkpoints and peers."""
    q = embed_images(query_set.images, spec, embed, batch_size=batch_size)
    g = embed_images(gallery_set.images, spec, embed, batch_size=batch_size)
    return evaluate_embeddings(q, g, query_set, gallery_set, rerank=rerank)[0]
