"""SFTok Workbench: the app around the library. The folders tell the architecture:

- ``workbench.runs``     run tracking: DuckDB metrics store, job manager, executors, run folders;
- ``workbench.services`` what the screens call (decoding, reconstruction, analyses, training form);
- ``workbench.io``       the workspace on disk: guarded paths, uploaded images, datasets;
- ``workbench.ui``       the Gradio screens (``ui.pages``, one module per screen) and their widgets.

The most used backend names are re-exported here.

Names are imported lazily so that light entry points (``python -m workbench.runs.runner``, which wraps
every training process) do not pay for DuckDB and pandas.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Store": "workbench.runs.store",
    "StoreLockedError": "workbench.runs.store",
    "JobManager": "workbench.runs.manager",
    "InvalidConfigError": "workbench.runs.manager",
    "DryRunValidator": "workbench.runs.manager",
    "RunRecord": "workbench.runs.records",
    "RunStatus": "workbench.runs.records",
    "SweepRecord": "workbench.runs.records",
    "ConfigDiff": "workbench.runs.records",
    "Progress": "workbench.runs.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
