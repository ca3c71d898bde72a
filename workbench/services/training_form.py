"""The Train screen's form as data: preset, dataset, ablation switches -> launcher overrides.

The job manager validates the result with the launcher's ``--dry-run``, so this module only maps
widgets to dotted ``key=value`` overrides (the launcher's CLI language) and parses the sweep grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from workbench.io.datasets import resolve_dataset
from workbench.io.workspace import Workspace


class FormError(ValueError):
    """A form field cannot be turned into an override; the message names the field."""


@dataclass(frozen=True)
class LaunchForm:
    stage: str = "1"
    model_preset: str = "tiny"
    dataset: str = ""  # workspace-relative dataset folder
    teacher: str = ""  # teacher folder (stages 1-3)
    tokenizer: str = ""  # tokenizer folder (generator stage)
    init_weights: str = ""  # stage 2 <- stage 1, stage 3 <- stage 2
    max_steps: int = 200
    batch_size: int = 16
    lr: float = 1e-4
    seed: int = 42
    sfvr_enabled: bool = True
    replace_prob: float = 1.0
    context_source: str = "first"
    mask_schedule: str = "arccos"
    unmasked_weight: float = 0.1
    extra: str = ""  # more overrides, one key=value per line

    def overrides(self, workspace: Workspace, resolve_model: Any = None) -> list[str]:
        """Dotted overrides for the launcher; ``resolve_model`` maps a model choice to a folder path."""
        if not self.dataset:
            raise FormError("dataset: choose a dataset (or build the default one)")
        data = resolve_dataset(workspace, self.dataset)
        if data.kind == "images":
            raise FormError(f"dataset: {self.dataset} is a folder of images; training reads webdataset shards "
                            "(convert it with `python -m trainers.data.convert`)")
        out = [f"model_preset={self.model_preset}", f"max_steps={int(self.max_steps)}",
               f"data.batch_size={int(self.batch_size)}", f"optim.lr={float(self.lr)!r}", f"seed={int(self.seed)}",
               "data.train_shards=" + shard_spec(data.train_sources),
               "data.eval_shards=" + shard_spec(data.val_sources),
               f"loss.unmasked_weight={float(self.unmasked_weight)!r}",
               f"eval_every={max(1, int(self.max_steps) // 4)}", f"save_every={max(1, int(self.max_steps) // 4)}",
               f"log_every={max(1, min(10, int(self.max_steps) // 20))}",
               f"optim.warmup_steps={min(200, int(self.max_steps) // 10)}"]
        resolve = resolve_model or (lambda choice: str(workspace.resolve(choice)))
        if self.stage in ("1", "2", "3") and self.teacher:
            out.append(f"teacher_path={resolve(self.teacher)}")
        if self.stage == "generator" and self.tokenizer:
            out.append(f"tokenizer_path={resolve(self.tokenizer)}")
        if self.init_weights and self.stage in ("2", "3"):
            out.append(f"init_weights={resolve(self.init_weights)}")
        if self.stage == "2":
            out += [f"sfvr.enabled={str(bool(self.sfvr_enabled)).lower()}", f"sfvr.replace_prob={float(self.replace_prob)!r}",
                    f"sfvr.context_source={self.context_source}", f"sfvr.mask_schedule={self.mask_schedule}"]
        return out + parse_extra(self.extra)


def shard_spec(paths: Sequence[str]) -> str:
    """Shard files as the one string ``data.train_shards`` takes: a path or a brace list in one folder."""
    if not paths:
        raise FormError("dataset: holds no shards")
    if len(paths) == 1:
        return str(paths[0])
    folders = {str(Path(p).parent) for p in paths}
    if len(folders) != 1:
        raise FormError("dataset: shards must lie in one folder")
    return f"{folders.pop()}/{{{','.join(Path(p).name for p in paths)}}}"


def parse_extra(text: str) -> list[str]:
    """One ``key=value`` per line; blank lines and ``#`` comments ignored."""
    out = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line or not line.split("=", 1)[0].strip():
            raise FormError(f"extra overrides, line {number}: expected key.sub=value, got {line!r}")
        out.append(line)
    return out


def _scalar(text: str) -> Any:
    """A YAML scalar, except that ``1e-4`` is a float (YAML 1.1 reads it as a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_grid(text: str) -> dict[str, list[Any]]:
    """Sweep grid: one ``key=v1, v2, ...`` per line (values parsed as YAML scalars)."""
    grid: dict[str, list[Any]] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, values = line.partition("=")
        if not sep or not key.strip():
            raise FormError(f"sweep grid, line {number}: expected key=v1, v2, ..., got {line!r}")
        parsed = [_scalar(v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise FormError(f"sweep grid, line {number}: {key.strip()} has no values")
        grid[key.strip()] = parsed
    return grid


def launch_note(form: LaunchForm) -> str:
    """What a launch should tell the user before it runs: a stage 2 or 3 without initial weights trains from random
    weights (the official ``run_stage2.sh`` allows it; the paper's recipe starts stage 2 from stage 1 and stage 3
    from stage 2)."""
    extra_keys = {line.partition("=")[0].strip() for line in form.extra.splitlines()}
    if form.stage not in ("2", "3") or form.init_weights or "init_weights" in extra_keys:
        return ""
    before = "1" if form.stage == "2" else "2"
    return (f"Note: stage {form.stage} starts from random weights (no initial weights chosen). The paper's recipe "
            f"starts it from a stage {before} model: pick one under Initial weights for that recipe.")
