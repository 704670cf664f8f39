"""DeepStream pad probe: DSLNet embeddings from nvinfer's tensor meta into a dslnet_edge ``Matcher``.

``python -m export.deepstream`` copies this file beside ``config_infer_reid.txt``. Attach the probe
to the src pad of the re-identification GIE (or of the tracker after it)::

    probe = ReidProbe(feature_dim=512, gie_id=2, gallery=dslnet_edge.Gallery.load("gallery.db"))
    reid_gie.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe, 0)

For every person object it finds the ``NvDsInferTensorMeta`` that the GIE attached
(``output-tensor-meta=1``), reads the ``embeddings`` layer as numpy and hands the frame's
embeddings, with the tracker's object ids as track ids, to ``Matcher.match``. The matcher's
"engine" is :class:`PrecomputedEmbeddings`: nvinfer already ran the network. Needs DeepStream's
Python bindings (``pyds``) and ``gi``, imported when the probe runs.
"""

from __future__ import annotations

import ctypes

import numpy as np

import dslnet_edge

NVDSINFER_TENSOR_OUTPUT_META = 12  # pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META


class PrecomputedEmbeddings:
    """Duck-typed engine for ``Matcher``: its "crops" are embeddings computed by nvinfer (L2-normalized here)."""

    def __init__(self, feature_dim: int):
        self.feature_dim = int(feature_dim)

    def embed(self, rows) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.feature_dim)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if not np.isfinite(x).all() or (norms < 1e-12).any():
            raise ValueError("nvinfer returned NaN/inf or all-zero embeddings")
        return x / norms


class ReidProbe:
    """A buffer pad probe (callable): reads the embeddings of each frame's objects and matches them."""

    def __init__(self, *, feature_dim: int, gie_id: int = 2, gallery=None, camera_names=None, **matcher_options):
        self.gie_id = gie_id
        self.camera_names = camera_names or {}
        self.matcher = dslnet_edge.Matcher(PrecomputedEmbeddings(feature_dim), gallery, **matcher_options)
        self.feature_dim = feature_dim

    def __call__(self, pad, info, user_data):
        import pyds
        from gi.repository import Gst

        batch = pyds.gst_buffer_get_nvds_batch_meta(hash(info.get_buffer()))
        frames = batch.frame_meta_list
        while frames is not None:
            frame = pyds.NvDsFrameMeta.cast(frames.data)
            embeddings, track_ids = [], []
            objects = frame.obj_meta_list
            while objects is not None:
                obj = pyds.NvDsObjectMeta.cast(objects.data)
                embedding = self._embedding(pyds, obj)
                if embedding is not None:
                    embeddings.append(embedding)
                    track_ids.append(int(obj.object_id))
                objects = objects.next
            if embeddings:
                camera = self.camera_names.get(frame.source_id, f"source-{frame.source_id}")
                for match in self.matcher.match(embeddings, camera=camera, track_ids=track_ids,
                                                timestamp=frame.ntp_timestamp / 1e9 or None):
                    self.on_match(frame, match)
            frames = frames.next
        return Gst.PadProbeReturn.OK

    def _embedding(self, pyds, obj) -> np.ndarray | None:
        user = obj.obj_user_meta_list
        while user is not None:
            meta = pyds.NvDsUserMeta.cast(user.data)
            if meta.base_meta.meta_type == NVDSINFER_TENSOR_OUTPUT_META:
                tensor_meta = pyds.NvDsInferTensorMeta.cast(meta.user_meta_data)
                if tensor_meta.unique_id == self.gie_id:
                    layer = pyds.get_nvds_LayerInfo(tensor_meta, 0)  # the one output: embeddings
                    pointer = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(ctypes.c_float))
                    return np.ctypeslib.as_array(pointer, shape=(self.feature_dim,)).copy()
            user = user.next
        return None

    def on_match(self, frame, match) -> None:
        """Override: draw, log or publish. The default prints one line per match."""
        print(f"frame {frame.frame_num} source {frame.source_id}: track {match.track_id} -> {match.identity} "
              f"({match.similarity if match.similarity is not None else 'new'})")
