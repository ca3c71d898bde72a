"""Datasets the app can see: built default datasets, image folders and webdataset shards in the workspace.

A dataset choice is a workspace-relative path. Training needs shard lists (``data.train_shards``);
analysis reads any of the three kinds through ``analysis.data.iter_image_batches``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainers.data.default_dataset import FORMAT_VERSION, MANIFEST, DefaultDataset, build_default_dataset

from workbench.io.workspace import PathRefused, Workspace

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_DATASET_DIR = "datasets/default"


@dataclass(frozen=True)
class DatasetChoice:
    """What one dataset choice resolves to."""

    label: str
    kind: str  # "default" (built default dataset), "shards" (a folder of .tar) or "images" (a folder of images)
    train_sources: tuple[str, ...]  # shards, or the image folder
    val_sources: tuple[str, ...]
    class_names: tuple[str, ...] = ()


def _kind(folder: Path) -> str | None:
    if (folder / MANIFEST).is_file():
        return "default"
    try:
        names = [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:
        return None
    if any(n.endswith(".tar") for n in names):
        return "shards"
    if sum(n.lower().endswith(IMAGE_SUFFIXES) for n in names) >= 1:
        return "images"
    return None


def list_datasets(workspace: Workspace, limit: int = 100) -> list[str]:
    """Workspace-relative folders that hold a dataset (default dataset, shards or images)."""
    found: list[Path] = []
    skip = {"runs", "exports", "cache"}
    for folder in workspace.walk(max_depth=4):
        rel = folder.relative_to(workspace.root).parts if workspace.root in folder.parents else ()
        if not rel or rel[0] in skip or any(f in folder.parents for f in found):
            continue
        if _kind(folder) is not None:
            found.append(folder)
            if len(found) >= limit:
                break
    return [workspace.display(f) for f in found]


def resolve_dataset(workspace: Workspace, choice: str) -> DatasetChoice:
    """A dataset choice as sources; :class:`PathRefused` outside the workspace, ValueError if not a dataset."""
    folder = workspace.resolve(choice)
    kind = _kind(folder) if folder.is_dir() else None
    if kind == "default":
        ds = DefaultDataset.load(folder)
        return DatasetChoice(choice, kind, tuple(ds.train_shards), tuple(ds.val_shards), tuple(ds.class_names))
    if kind == "shards":
        shards = tuple(str(p) for p in sorted(folder.glob("*.tar")))
        return DatasetChoice(choice, kind, shards, shards)
    if kind == "images":
        return DatasetChoice(choice, kind, (str(folder),), (str(folder),))
    raise PathRefused(f"{choice}: not a dataset (expected a default dataset with {MANIFEST}, "
                      "a folder of .tar shards or a folder of images)")


def build_workspace_default_dataset(workspace: Workspace, image_size: int = 64, train_crops: int = 4000,
                                    val_crops: int | None = None) -> DatasetChoice:
    """Build (or reuse) the default dataset inside the workspace, sized for CPU experiments.

    The folder name carries the builder's format version, so a workspace made by an older release keeps
    its dataset (its runs still point there) and gets a new one beside it instead of an error."""
    val_crops = val_crops or max(16, min(256, train_crops // 16))
    out = workspace.root / DEFAULT_DATASET_DIR / f"{image_size}px-{train_crops}-v{FORMAT_VERSION}"
    build_default_dataset(out, image_size=image_size, train_crops=train_crops, val_crops=val_crops)
    return resolve_dataset(workspace, workspace.display(out))
