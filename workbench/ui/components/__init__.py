"""Widgets shared by several screens (step scrubber, model picker, plots, error handling)."""
