"""Gradio screens of the workbench. ``build_app(ctx)`` assembles them; ``launch_app`` serves them."""
from workbench.ui.app import ServeOptions, UnsafeBind, build_app, launch_app
from workbench.ui.context import AppContext

__all__ = ["AppContext", "ServeOptions", "UnsafeBind", "build_app", "launch_app"]
