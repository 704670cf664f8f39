"""Runnable programs on real video: ``python -m samples.video_reid`` and friends."""
