"""Evaluation jobs from the app: check a request, build one job per model, submit them to the job manager.

An evaluation is a run of kind ``eval`` in the same job manager and store as training runs; its command is
``python -m workbench.runs.eval_job`` (which runs ``analysis eval`` and reports into the run directory; see
that module for the rows it writes). Everything that can be checked before a job starts is: the models exist
and load, the data exists and holds the images asked for, the Inception weights file is there (else a message
naming the file, where it goes and the command that fetches it), the settings are in range. Several models
are several runs (a run's rows are one model's), launched together.
"""
from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from analysis.fid import INCEPTION_WEIGHTS_FILE
from core.checkpoint import CheckpointError
from core.perceptual import hub_checkpoint_dir
from trainers.data.default_dataset import DefaultDataset

from workbench.io.datasets import IMAGE_SUFFIXES, resolve_dataset
from workbench.io.workspace import PathRefused, Workspace
from workbench.runs.eval_job import OUT_DIR
from workbench.runs.executors.local import parse_devices
from workbench.runs.executors.slurm_options import SlurmOptions
from workbench.runs.manager import JobManager
from workbench.runs.records import RunRecord
from workbench.runs.store import Store
from workbench.services.analyses import SPLITS
from workbench.services.model_registry import EMBEDDED_FOLDERS, TEACHER_CHOICE, ModelRegistry, ModelUnavailable

EVAL_KIND = "eval"
MAX_PROCESSES = 64
WEIGHTS_DIR = "weights"  # WORKSPACE/weights/: where the app looks for the Inception file first


class EvalRefused(ValueError):
    """A request that cannot start; the message names the setting and what to do."""


@dataclass(frozen=True)
class EvalRequest:
    """What the Evaluate screen asks for."""

    models: tuple[str, ...]  # model choices (registry values or workspace paths)
    dataset: str | None
    split: str = "val"
    steps: str = "1,2,4,8"
    num_images: int = 1000
    batch_size: int = 32
    device: str = "cpu"  # "cpu", "cuda:N" or "cuda:N,M,..." (one process per GPU)
    processes: int = 1  # CPU processes under torchrun (GPUs: one per listed device)
    lpips: bool = True
    inception: str = ""  # empty: WORKSPACE/weights/ or the torch hub cache
    seed: int = 0


@dataclass(frozen=True)
class ModelSource:
    """A model of the request, checked: where it is, what it evaluates at, which checkpoint it is."""

    choice: str
    label: str
    path: Path
    image_size: int
    family: str
    max_steps: int
    needs_teacher: bool
    checkpoint_step: int | None  # the training step its config.json records, when it does
    source_run: str | None  # the training run whose model folder it is


@dataclass(frozen=True)
class EvalPlan:
    """A checked request: everything the job commands need."""

    request: EvalRequest
    models: tuple[ModelSource, ...]
    data: tuple[str, ...]
    steps: tuple[int, ...]
    inception: Path
    teacher: Path | None
    launch_id: str = field(default_factory=lambda: f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}")


# -- checks ----------------------------------------------------------------------------------------
def parse_steps(text: str) -> tuple[int, ...]:
    """``"1,2,4,8"`` -> (1, 2, 4, 8): positive, no repeats, in the order given."""
    parts = [p.strip() for p in str(text or "").split(",") if p.strip()]
    try:
        steps = tuple(int(p) for p in parts)
    except ValueError as err:
        raise EvalRefused(f"steps: expected comma-separated whole numbers such as 1,2,4,8, got {text!r}") from err
    if not steps or min(steps) < 1:
        raise EvalRefused(f"steps: expected at least one step count, each >= 1, got {text!r}")
    if len(set(steps)) != len(steps):
        raise EvalRefused(f"steps: {text!r} names a step count twice")
    return steps


def inception_candidates(workspace: Workspace) -> list[Path]:
    """Where the app looks for the Inception weights when no path is given, in order."""
    return [workspace.root / WEIGHTS_DIR / INCEPTION_WEIGHTS_FILE, hub_checkpoint_dir() / INCEPTION_WEIGHTS_FILE]


def default_inception(workspace: Workspace) -> str:
    """The Inception path the screen starts with: the first candidate that exists, else the workspace's."""
    found = [p for p in inception_candidates(workspace) if p.is_file()]
    return str((found or inception_candidates(workspace))[0])


def inception_missing_message(workspace: Workspace, tried: Sequence[Path]) -> str:
    from analysis.fid import INCEPTION_WEIGHTS_URL

    target = inception_candidates(workspace)[0]
    return (f"rFID and IS need torch-fidelity's Inception weights file {INCEPTION_WEIGHTS_FILE!r}, not found at "
            f"{' or '.join(map(str, tried))}. Put it in {target.parent} (or the torch hub cache "
            f"{hub_checkpoint_dir()}); nothing is downloaded. Online, fetch it with: "
            f"curl -L --create-dirs -o {target} {INCEPTION_WEIGHTS_URL}")


def find_inception(workspace: Workspace, text: str) -> Path:
    """The Inception file to use: ``text`` (inside the workspace, or the hub cache's file) or the default places."""
    text = (text or "").strip()
    if not text:
        tried = inception_candidates(workspace)
    else:
        hub_file = hub_checkpoint_dir() / INCEPTION_WEIGHTS_FILE
        if Path(text).expanduser() == hub_file:
            tried = [hub_file]
        else:
            try:
                tried = [workspace.resolve(text, must_exist=False)]
            except PathRefused as err:
                raise EvalRefused(f"Inception weights: {err}") from err
    for path in tried:
        if path.is_file():
            return path
    raise EvalRefused(inception_missing_message(workspace, tried))


def model_path(registry: ModelRegistry, choice: str) -> tuple[str, Path]:
    """(label, local path) of a model choice; hub ids are refused (a job reads local files only)."""
    text = (choice or "").strip()
    if text in EMBEDDED_FOLDERS:
        try:
            return registry.locate_embedded(text)
        except ModelUnavailable as err:
            raise EvalRefused(str(err)) from err
    if text == TEACHER_CHOICE and registry.teacher_dir is not None:
        return "embedded teacher", registry.teacher_dir
    try:
        return text, registry.workspace.resolve(text)
    except PathRefused as err:
        raise EvalRefused(f"model {text!r}: {err}") from err


def checkpoint_step(path: Path) -> int | None:
    """The training step a saved model folder records (``config.json`` ``steps``), if it does."""
    try:
        meta = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    steps = meta.get("steps") if isinstance(meta, dict) else None
    return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else None


def training_run_of(store: Store, path: Path) -> str | None:
    """The run whose final model folder ``path`` is (``RUN_DIR/model``), if any."""
    if path.name != "model":
        return None
    for run in store.list_runs():
        if Path(run.run_dir).resolve() == path.parent.resolve():
            return run.id
    return None


def check_model(registry: ModelRegistry, store: Store, choice: str) -> ModelSource:
    """Load the model once (on the CPU) so a job never starts on one that cannot load."""
    from core.tokenizer import load_tokenizer

    label, path = model_path(registry, choice)
    if not path.exists():
        raise EvalRefused(f"model {label}: {path} does not exist")
    needs_teacher = False
    try:
        tok = load_tokenizer(path, "cpu")
    except CheckpointError as first:
        teacher = registry.teacher_if_present()
        if teacher is None:
            raise EvalRefused(f"model {label}: {first}") from first
        try:  # a stage-1/2 model renders through the app's teacher
            tok, needs_teacher = load_tokenizer(path, "cpu", teacher=teacher), True
        except CheckpointError:
            raise EvalRefused(f"model {label}: {first}") from first
    except (OSError, ValueError) as err:
        raise EvalRefused(f"model {label}: {err}") from err
    return ModelSource(choice, label, path.resolve(), tok.info.image_size, tok.info.family, tok.info.max_steps,
                       needs_teacher, checkpoint_step(path) if path.is_dir() else None, training_run_of(store, path))


def dataset_images(workspace: Workspace, dataset: str | None, split: str) -> tuple[tuple[str, ...], int | None]:
    """(sources, image count when cheaply known) of one split of a workspace dataset."""
    if not dataset:
        raise EvalRefused("dataset: none chosen; build the default dataset on the Train screen or put a folder of "
                          "images in the workspace, then pick it")
    if split not in SPLITS:
        raise EvalRefused(f"split: must be one of {SPLITS}, got {split!r}")
    try:
        choice = resolve_dataset(workspace, dataset)
    except (PathRefused, ValueError, OSError) as err:
        raise EvalRefused(f"dataset: {err}") from err
    sources = choice.val_sources if split == "val" else choice.train_sources
    missing = [s for s in sources if not Path(s).exists()]
    if not sources or missing:
        raise EvalRefused(f"dataset {dataset}: its {split} files are missing ({', '.join(missing) or 'none listed'})")
    if choice.kind == "default":
        ds = DefaultDataset.load(workspace.resolve(dataset))
        return sources, ds.val_count if split == "val" else ds.train_count
    if choice.kind == "images":
        return sources, sum(1 for p in Path(sources[0]).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return sources, None


def _whole(value: Any, name: str, low: int, high: int | None = None) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise EvalRefused(f"{name}: expected a whole number, got {value!r}") from err
    if number != int(number) or number < low or (high is not None and number > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise EvalRefused(f"{name}: expected a whole number {bound}, got {value!r}")
    return int(number)


def plan_evaluation(registry: ModelRegistry, store: Store, request: EvalRequest) -> EvalPlan:
    """Check everything a job needs before any starts; :class:`EvalRefused` names the first problem."""
    workspace = registry.workspace
    choices = [c for c in dict.fromkeys(request.models) if c]
    if not choices:
        raise EvalRefused("models: pick at least one model")
    steps = parse_steps(request.steps)
    num_images = _whole(request.num_images, "images", 2)
    _whole(request.batch_size, "batch size", 1, 4096)
    processes = _whole(request.processes, "processes", 1, MAX_PROCESSES)
    try:
        devices = parse_devices(request.device)
    except ValueError as err:
        raise EvalRefused(str(err)) from err
    if processes > 1 and devices != ("cpu",):
        raise EvalRefused(f"processes: {processes} CPU processes with device {request.device!r}; on GPUs the run "
                          "starts one process per listed device (cuda:0,1 = 2), leave processes at 1")
    data, available = dataset_images(workspace, request.dataset, request.split)
    if available is not None and available < num_images:
        raise EvalRefused(f"images: {num_images} asked, the {request.split} split of {request.dataset} holds "
                          f"{available}; ask for at most {available}")
    inception = find_inception(workspace, request.inception)
    models = tuple(check_model(registry, store, c) for c in choices)
    for m in models:
        if min(steps) > m.max_steps:
            raise EvalRefused(f"steps: {m.label} ({m.family}) decodes in at most {m.max_steps} step(s); none of "
                              f"{','.join(map(str, steps))} fits")
    teacher = registry.teacher_dir if any(m.needs_teacher for m in models) else None
    return EvalPlan(request, models, data, steps, inception, teacher)


# -- commands and submission -----------------------------------------------------------------------
def eval_arguments(plan: EvalPlan, model: ModelSource) -> list[str]:
    """The ``analysis eval`` arguments of one model's job."""
    req = plan.request
    args = ["--model", str(model.path), "--data", *plan.data, "--steps", ",".join(map(str, plan.steps)),
            "--num-images", str(int(req.num_images)), "--batch-size", str(int(req.batch_size)),
            "--seed", str(int(req.seed)), "--inception-weights", str(plan.inception),
            "--device", "cpu" if req.device.strip().lower() == "cpu" else "cuda"]
    if plan.teacher is not None and model.needs_teacher:
        args += ["--teacher", str(plan.teacher)]
    if not req.lpips:
        args.append("--no-lpips")
    return args


def eval_command(plan: EvalPlan, model: ModelSource, run_dir: Path, slurm: SlurmOptions | None = None,
                 python: str = sys.executable) -> list[str]:
    """``python -m workbench.runs.eval_job --run-dir RUN ...``; N local processes go through ``torchrun``
    (Slurm wraps the plain command in its own torchrun when the job has several GPUs or nodes)."""
    job = ["-m", "workbench.runs.eval_job", "--run-dir", str(run_dir),
           "--checkpoint-step", str(model.checkpoint_step or 0), *eval_arguments(plan, model)]
    processes = len(parse_devices(plan.request.device))
    processes = max(processes, int(plan.request.processes)) if slurm is None else 1
    if processes > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *job]
    return [python, *job]


def job_config(plan: EvalPlan, model: ModelSource) -> dict[str, Any]:
    """What an evaluation run records as its config (shown and compared like a training run's)."""
    req = plan.request
    return {"evaluate": {
        "model": str(model.path), "label": model.label, "choice": model.choice, "family": model.family,
        "checkpoint_step": model.checkpoint_step, "source_run": model.source_run, "data": list(plan.data),
        "dataset": req.dataset, "split": req.split, "steps": list(plan.steps), "num_images": int(req.num_images),
        "batch_size": int(req.batch_size), "seed": int(req.seed), "lpips": bool(req.lpips),
        "inception_weights": str(plan.inception), "processes": int(req.processes), "launch": plan.launch_id,
        "out": OUT_DIR}}


def submit_evaluation(jobs: JobManager, plan: EvalPlan, slurm: SlurmOptions | None = None) -> list[RunRecord]:
    """One queued run per model of a checked plan."""
    runs = []
    for model in plan.models:
        runs.append(jobs.submit_job(
            EVAL_KIND, lambda run_dir, m=model: eval_command(plan, m, run_dir, slurm), job_config(plan, model),
            device=plan.request.device, name=f"eval {model.label}", slurm=slurm))
    return runs


# -- reading back ----------------------------------------------------------------------------------
def evaluation_runs(store: Store) -> list[RunRecord]:
    """Every evaluation run of the workspace, newest first."""
    runs = [r for r in store.list_runs() if r.stage == EVAL_KIND]
    return sorted(runs, key=lambda r: r.created_at or 0.0, reverse=True)


def launch_of(run: RunRecord) -> str | None:
    return (run.config or {}).get("evaluate", {}).get("launch")


def checkpoint_evaluations(store: Store, model_dir: str | Path) -> list[tuple[str, str, int, str, float]]:
    """Every ``eval/*`` row the store holds for one checkpoint: those its training run logged while training (at
    the step the folder records) and those of evaluation jobs of that folder, as ``(run_id, kind, step, key,
    value)``: one table, one vocabulary."""
    path = Path(model_dir).resolve()
    step = checkpoint_step(path)
    owners: list[tuple[RunRecord, int | None]] = []
    source = training_run_of(store, path)
    if source is not None and step is not None:
        owners.append((store.get_run(source), step))
    owners += [(r, None) for r in evaluation_runs(store)
               if Path((r.config or {}).get("evaluate", {}).get("model", "")).resolve() == path]
    rows = []
    for run, at in owners:
        frame = store.metrics_frame(run.id)
        frame = frame[frame["key"].str.startswith("eval/")]
        if at is not None:
            frame = frame[frame["step"] == at]
        rows += [(run.id, run.stage or "", int(s), str(k), float(v))
                 for s, k, v in zip(frame["step"], frame["key"], frame["value"])]
    return rows
