"""Gradio screens of the workbench. ``build_app(ctx)`` assembles them; ``launch_app`` serves them."""
from .app import ServeOptions, UnsafeBind, build_app, launch_app
from .context import AppContext

__all__ = ["AppContext", "ServeOptions", "UnsafeBind", "build_app", "launch_app"]
