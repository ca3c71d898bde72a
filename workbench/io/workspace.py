"""The only folders the app's file pickers may see, and the guard that keeps user paths inside them.

A path typed into the UI is resolved (symlinks followed) and must land inside one of the configured
roots; ``..`` tricks, absolute paths elsewhere and symlinks pointing out are refused with a message.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core.checkpoint import WEIGHT_FILES

MODEL_CONFIG = "config.json"


class PathRefused(ValueError):
    """A user-supplied path lies outside the workspace folders (or does not exist where required)."""


@dataclass(frozen=True)
class Workspace:
    """Allowed folders; the first one is where relative paths start and where the app writes."""

    roots: tuple[Path, ...]

    @classmethod
    def create(cls, *folders: str | os.PathLike) -> "Workspace":
        if not folders:
            raise ValueError("workspace: at least one folder is needed")
        roots = []
        for folder in folders:
            path = Path(folder).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            roots.append(path.resolve())
        return cls(tuple(roots))

    @property
    def root(self) -> Path:
        return self.roots[0]

    def contains(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved == root or root in resolved.parents for root in self.roots)

    def resolve(self, user_path: str | os.PathLike, must_exist: bool = True) -> Path:
        """A path inside the workspace, or :class:`PathRefused` saying why not."""
        text = str(user_path).strip()
        if not text:
            raise PathRefused("path: empty")
        if "\x00" in text:
            raise PathRefused("path: contains a NUL character")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if not self.contains(resolved):
            allowed = ", ".join(str(r) for r in self.roots)
            raise PathRefused(f"{text}: outside the workspace (allowed: {allowed})")
        if must_exist and not resolved.exists():
            raise PathRefused(f"{text}: does not exist in the workspace")
        return resolved

    def display(self, path: Path) -> str:
        """The path as the UI shows it: relative to its root when possible."""
        resolved = path.resolve()
        for root in self.roots:
            if resolved == root or root in resolved.parents:
                rel = resolved.relative_to(root)
                return str(rel) if root == self.root else str(resolved)
        return str(resolved)

    def walk(self, max_depth: int = 6) -> Iterator[Path]:
        """Folders under the roots (breadth-first, hidden folders and symlinks out of the roots skipped)."""
        for root in self.roots:
            frontier = [(root, 0)]
            while frontier:
                folder, depth = frontier.pop(0)
                yield folder
                if depth >= max_depth:
                    continue
                try:
                    children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    continue
                frontier.extend((c, depth + 1) for c in children if self.contains(c))

    def model_folders(self, model_types: tuple[str, ...] = ("sftok",), limit: int = 200) -> list[Path]:
        """Saved model folders (``config.json`` + weights) of the given model types."""
        found = []
        for folder in self.walk():
            if model_type_of(folder) in model_types:
                found.append(folder)
                if len(found) >= limit:
                    break
        return found


def model_type_of(folder: Path) -> str | None:
    """The ``model_type`` a saved folder declares, or None if it is not a model folder."""
    config = folder / MODEL_CONFIG
    if not config.is_file():
        return None
    try:
        meta = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    has_weights = any((folder / n).is_file() for n in WEIGHT_FILES)
    return meta.get("model_type", "sftok") if has_weights else None
