"""Class names: ``labels.json`` beside a dataset's shards, ``classes.json`` beside a generator's weights.

A dataset maps class name -> id (written by ``trainers.data.convert`` and the default dataset); a
class-conditional generator only knows ids, so its export carries the names as a list indexed by id,
which the Generate screen shows.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .shards import ShardSpec, _is_local, expand_shards

LABELS_FILE = "labels.json"
CLASS_NAMES_FILE = "classes.json"


def class_names_for_shards(shards: ShardSpec, num_classes: int) -> list[str]:
    """Names of ids 0..num_classes-1 from the ``labels.json`` beside the first local shard ([] if none);
    ids the file does not name are called ``class <id>``."""
    local = [url for url in expand_shards(shards) if _is_local(url)]
    if not local:
        return []
    try:
        labels = json.loads((Path(local[0]).parent / LABELS_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(labels, dict):
        return []
    by_id = {int(i): str(name) for name, i in labels.items() if isinstance(i, int) and 0 <= i < num_classes}
    if not by_id:
        return []
    return [by_id.get(i, f"class {i}") for i in range(max(by_id) + 1)]


def write_class_names(model_dir: str | os.PathLike, names: list[str]) -> None:
    (Path(model_dir) / CLASS_NAMES_FILE).write_text(json.dumps(names, indent=1) + "\n")
