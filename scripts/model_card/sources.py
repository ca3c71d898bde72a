"""Where the card's numbers come from: the runs folder and dataset it is written for, and the shipped files."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"


@dataclass(frozen=True)
class CardSources:
    """The runs and the dataset a card describes, passed down explicitly: the export writes the card of the
    default folders, ``--card-only`` that of folders it is given."""

    runs: Path  # one folder per run (metrics.jsonl, launches.jsonl, adopted.json)
    data: Path  # the dataset folder those runs trained on (its dataset.json)


@lru_cache(maxsize=None)
def manifest_of(folder: Path) -> dict:
    """A dataset folder's ``dataset.json`` (read once: the card asks it several questions)."""
    return json.loads((folder / "dataset.json").read_text())


def photo_count(data: Path) -> int:
    """How many photos the dataset at ``data`` trains on (the held-out ones not counted)."""
    return len(manifest_of(data)["train_sources"])
