"""Class names travel from a dataset's labels.json to a generator's classes.json."""
from __future__ import annotations

from pathlib import Path

from trainers.data.labels import class_names_for_shards


def _shards(folder: Path, labels: str | None) -> str:
    for i in range(2):
        (folder / f"s-{i}.tar").write_bytes(b"")
    if labels is not None:
        (folder / "labels.json").write_text(labels)
    return str(folder / "s-{0..1}.tar")


def test_names_by_id_capped_at_the_generator_classes(tmp_path: Path) -> None:
    shards = _shards(tmp_path, '{"cat": 1, "dog": 0, "eel": 5}')
    assert class_names_for_shards(shards, num_classes=4) == ["dog", "cat"]  # id 5 is beyond 4 classes
    assert class_names_for_shards(shards, num_classes=6) == ["dog", "cat", "class 2", "class 3", "class 4", "eel"]


def test_no_or_broken_labels_give_no_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert class_names_for_shards(_shards(tmp_path / "a", None), 4) == []
    assert class_names_for_shards(_shards(tmp_path / "b", "[not json"), 4) == []
