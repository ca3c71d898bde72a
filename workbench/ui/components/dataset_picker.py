"""A dataset dropdown listing the workspace's datasets, with a refresh button (datasets appear while
the app runs, e.g. when the Train screen builds the default one). Typed paths are checked when used."""
from __future__ import annotations

import gradio as gr

from workbench.services.analyses import SPLITS, default_dataset
from workbench.io.datasets import list_datasets
from workbench.io.workspace import Workspace
from workbench.ui.components.choices import refreshed


class DatasetPicker:
    def __init__(self, workspace: Workspace, name: str, label: str = "Dataset (in the workspace)") -> None:
        self.workspace = workspace
        with gr.Row(equal_height=True):
            self.dropdown = gr.Dropdown(list_datasets(workspace), value=default_dataset(workspace), label=label,
                                        allow_custom_value=True, scale=5, elem_id=f"{name}-dataset",
                                        info="a built default dataset, a folder of .tar shards or of images")
            self.refresh = gr.Button("↻", scale=0, min_width=44, elem_id=f"{name}-dataset-refresh")
        self.split = gr.Radio(list(SPLITS), value="val", label="Split", elem_id=f"{name}-split",
                              info="folders of images and plain shard folders have one split: both read all of it")
        self.refresh.click(self._refresh, [self.dropdown], [self.dropdown], api_name=f"{name}_refresh_datasets",
                           show_progress="hidden")

    def _refresh(self, current: str | None) -> gr.Dropdown:
        return refreshed(list_datasets(self.workspace), current, fallback=default_dataset(self.workspace))

    def reload_on(self, triggers: list) -> None:
        """Re-read the list when a screen opens (page load, tab select): things appear while the app runs."""
        gr.on(triggers, self._refresh, [self.dropdown], [self.dropdown], show_progress="hidden",
              api_visibility="private")
