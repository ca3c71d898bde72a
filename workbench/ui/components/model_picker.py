"""A model dropdown listing the embedded default and saved folders inside the workspace.

Typed values are allowed (a workspace path or, online, a hub id); they are checked when used, by
:class:`workbench.services.model_registry.ModelRegistry`, never trusted here.
"""
from __future__ import annotations

import gradio as gr

from workbench.services.model_registry import DEFAULT_CHOICE, ModelRegistry
from workbench.ui.components.choices import refreshed


class ModelPicker:
    def __init__(self, registry: ModelRegistry, label: str, model_type: str = "sftok", name: str = "model",
                 info: str | None = None) -> None:
        self.registry, self.model_type = registry, model_type
        choices = registry.choices(model_type)
        value = DEFAULT_CHOICE if model_type == "sftok" else (choices[0][1] if choices else None)
        with gr.Row(equal_height=True):
            self.dropdown = gr.Dropdown(choices=choices, value=value, label=label, allow_custom_value=True,
                                        scale=5, elem_id=f"{name}-picker", info=info)
            self.refresh = gr.Button("↻", scale=0, min_width=44, elem_id=f"{name}-refresh")
        self.refresh.click(self._refresh, [self.dropdown], [self.dropdown], api_name=f"{name}_refresh_models",
                           show_progress="hidden")

    def _refresh(self, current: str | None) -> gr.Dropdown:
        return refreshed(self.registry.choices(self.model_type), current, fallback=lambda found: found[0] if found else None)

    def reload_on(self, triggers: list) -> None:
        """Re-read the list when a screen opens (page load, tab select): things appear while the app runs."""
        gr.on(triggers, self._refresh, [self.dropdown], [self.dropdown], show_progress="hidden",
              api_visibility="private")
