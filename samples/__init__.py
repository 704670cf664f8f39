"""Runnable programs on real video that show the whole runtime end to end (see samples/README.md).

* ``python -m samples.video_reid``: detect, track and re-identify people in one video; annotated video, log, gallery.
* ``python -m samples.multi_camera``: one thread per feed, one shared Matcher: people recognised across cameras.
* ``python -m samples.enroll``: known people from folders of crops into a gallery file.

Building blocks: :mod:`samples.detect` (HOG people detector, boxes from files, NMS),
:mod:`samples.tracking` (IoU tracker), :mod:`samples.video` (checked reading, atomic writing),
:mod:`samples.pipeline` (one camera's loop, drawing, logs). Samples import ``dslnet_edge``, never the reverse.
"""
