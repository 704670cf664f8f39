"""Choosing a detector from its command-line spec (``--detector``): HOG, a boxes file or YOLOX.

The factory stands above the detectors it picks (:mod:`samples.detect`, :mod:`samples.yolox`),
so neither of those imports the other's chooser.
"""

from __future__ import annotations

import dataclasses

from samples.detect import BoxesDetector, Detector, DetectorError, HogConfig, HogDetector
from samples.yolox import YoloxDetector, parse_yolox_spec

__all__ = ["make_detector"]


def make_detector(spec: str = "hog", *, hog: HogConfig | None = None) -> Detector:
    """A detector from a command-line spec.

    * ``"hog"``: :class:`~samples.detect.HogDetector` with ``hog`` (default :class:`~samples.detect.HogConfig`);
    * ``"hog:min_person_height=192,win_stride=4"``: the same with those :class:`~samples.detect.HogConfig` fields
      replaced (per camera, in ``multi_camera``);
    * ``"boxes:PATH"``: :class:`~samples.detect.BoxesDetector`;
    * ``"yolox:PATH[,key=value,...]"``: :class:`samples.yolox.YoloxDetector` (options there).
    """
    if spec == "hog" or spec.startswith("hog:"):
        config = hog or HogConfig()
        if spec.startswith("hog:"):
            config = dataclasses.replace(config, **_hog_overrides(spec[len("hog:") :]))
        return HogDetector(config)
    if spec.startswith("boxes:"):
        path = spec[len("boxes:") :]
        if not path:
            raise DetectorError("--detector boxes: needs a file, e.g. --detector boxes:boxes.json")
        return BoxesDetector(path)
    if spec.startswith("yolox:"):
        return YoloxDetector(parse_yolox_spec(spec[len("yolox:") :]))
    raise DetectorError(
        f"unknown detector {spec!r}; use 'yolox:MODEL.onnx', 'hog', 'hog:FIELD=VALUE,...' or 'boxes:FILE' (JSON or MOTChallenge boxes per frame)"
    )


def _hog_overrides(text: str) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(HogConfig)}
    out: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise DetectorError(f"--detector hog:{text}: {item!r} is not FIELD=VALUE with FIELD one of {sorted(fields)}")
        try:
            out[key] = int(value) if fields[key] == "int" else (None if value.strip().lower() == "none" else float(value))
        except ValueError:
            raise DetectorError(f"--detector hog:{text}: {key} needs a number, got {value!r}") from None
    return out
