"""Partial statistics of an evaluation on disk, so a killed run resumes where it stopped.

One file per rank (``partial/rank{r}-of-{world}.npz``): the rank's sums (see :mod:`analysis.eval_stats`),
how many of its images they cover, and the run's settings. It is written to a temporary name and renamed,
so a kill at any moment leaves either the previous checkpoint or the new one, never half a file. A resume
with other settings (models, steps, image count, world size...) is refused with the setting named.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

META_KEY = "__meta__"


class ResumeMismatch(ValueError):
    """A checkpoint written by a run with other settings."""


def checkpoint_path(out: str | os.PathLike, rank: int, world: int) -> Path:
    return Path(out) / "partial" / f"rank{rank}-of-{world}.npz"


def fresh_or_resumed(out: str | os.PathLike, rank: int, world: int, resume: bool) -> Path:
    """This rank's checkpoint path; an existing partial run is never overwritten unless it is being resumed."""
    path = checkpoint_path(out, rank, world)
    if path.exists() and not resume:
        raise ValueError(f"{path}: a partial run of this output folder exists; pass --resume to continue it, or "
                         "delete the folder 'partial' to start again")
    return path


def save_checkpoint(path: Path, state: Mapping[str, np.ndarray], position: int, settings: Mapping[str, Any]) -> None:
    """Atomically write ``state`` after ``position`` of this rank's images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"position": int(position), "settings": settings}, sort_keys=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    with open(tmp, "wb") as handle:
        np.savez(handle, **{META_KEY: np.array(meta)}, **state)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, settings: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """(state, position) from ``path``, refusing a checkpoint of a run with other ``settings``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[META_KEY]))
            state = {k: np.array(data[k]) for k in data.files if k != META_KEY}
    except (OSError, ValueError, KeyError) as err:
        raise ResumeMismatch(f"checkpoint {path}: unreadable ({err}); delete it to start again") from err
    saved = meta["settings"]
    for key in sorted(set(saved) | set(settings)):
        if saved.get(key) != settings.get(key):
            raise ResumeMismatch(f"checkpoint {path}: written with {key} = {saved.get(key)!r}, this run has "
                                 f"{settings.get(key)!r}; resume with the same settings or use another --out")
    return state, int(meta["position"])
