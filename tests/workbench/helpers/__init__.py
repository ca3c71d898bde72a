"""Helpers for the workbench store/jobs tests: a fake trainer (real processes, same CLI as
``launch_training.py``) and small factories around it."""
