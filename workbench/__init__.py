"""SFTok Workbench backend: the DuckDB metrics store (``store``), background training jobs (``jobs``)
and the record types they share (``records``). The Gradio UI lives in ``workbench.ui``.

Names are imported lazily so that light entry points (``python -m workbench.runner``, which wraps
every training process) do not pay for DuckDB and pandas.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Store": "workbench.store",
    "StoreLockedError": "workbench.store",
    "JobManager": "workbench.jobs",
    "InvalidConfigError": "workbench.jobs",
    "DryRunValidator": "workbench.jobs",
    "RunRecord": "workbench.records",
    "RunStatus": "workbench.records",
    "SweepRecord": "workbench.records",
    "ConfigDiff": "workbench.records",
    "Progress": "workbench.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
