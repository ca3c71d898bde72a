"""Resumable training state on disk: ``checkpoints/checkpoint-<step>/``, written atomically.

A checkpoint is first written to a hidden temporary folder and renamed into place only when every
file is complete, so a crash or a full disk mid-write never damages the previous checkpoint (and
old checkpoints are pruned only after the new one exists). Everything is read back with
``weights_only=True``.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from core.checkpoint import CheckpointError, read_state_dict

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with metadata.json), oldest first."""
    root = checkpoint_dir(run_dir)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = CHECKPOINT_RE.match(child.name)
            if match and (child / "metadata.json").is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | os.PathLike, step: int, model_state: dict[str, torch.Tensor],
                    ema_state: dict[str, torch.Tensor] | None, training_state: dict[str, Any],
                    metadata: dict[str, Any], keep_last: int = 2) -> Path:
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
        torch.save(training_state, tmp / "training_state.pt")
        (tmp / "metadata.json").write_text(json.dumps({"global_step": step, **metadata}, indent=2, default=str))
        for child in tmp.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Model, EMA, training state and metadata of one checkpoint; a damaged file is a
    :class:`CheckpointError` naming it (tensors via safetensors, the rest ``weights_only=True``)."""
    path = Path(path)
    try:
        metadata = json.loads((path / "metadata.json").read_text())
        if not isinstance(metadata, dict) or not isinstance(metadata.get("global_step"), int):
            raise CheckpointError(f"{path / 'metadata.json'}: no integer global_step")
        out: dict[str, Any] = {
            "model": read_state_dict(path / "model.safetensors"),
            "training": torch.load(path / "training_state.pt", map_location="cpu", weights_only=True),
            "metadata": metadata,
        }
        if (path / "ema.safetensors").is_file():
            out["ema"] = read_state_dict(path / "ema.safetensors")
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path}: unreadable training checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:300] if str(err) else ''})") from err
    return out


def load_latest_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest checkpoint that reads back whole, plus one line per newer one that did not.

    Writes are atomic, so a damaged newest checkpoint means damage after the fact (a disk error, a
    hand edit); resuming from the previous one loses ``save_every`` steps instead of the run.
    """
    problems: list[str] = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path), problems
        except CheckpointError as err:
            problems.append(str(err))
    if problems:
        raise CheckpointError(f"{run_dir}: no readable checkpoint: " + "; ".join(problems))
    return None
