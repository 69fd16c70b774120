"""Landmarks on video: frames in (video/frames.py), faces tracked (video/tracker.py), smoothed
(video/smoothing.py), JSON Lines and an annotated video out (video/run.py)."""
