"""``python -m workbench.runs.eval_job --run-dir RUN [--checkpoint-step S] EVAL-ARGS``: an evaluation as a job.

The job manager runs an evaluation like a training run (same executors, run directory, statuses, store).
``EVAL-ARGS`` are those of ``python -m analysis eval`` with exactly one ``--model``: a run's rows are one
model's, as a training run's are, so several models are several runs. ``--out`` is always ``RUN/eval``
(``results.json`` and the partial statistics live there).

It reports through ``trainers.sink.JsonlSink`` into ``RUN`` in the training runs' vocabulary, so the store
holds a training run's in-training evaluation and an evaluation job's rows of the same checkpoint alike:

- at step ``S`` (the checkpoint's training step; 0 when unknown), per decoding step count ``N``:
  ``eval/rfid@N``, ``eval/is@N``, ``eval/psnr@N``, ``eval/ssim@N``, ``eval/lpips@N`` (when LPIPS ran);
  per model: ``eval/codebook_used`` (fraction of codes used), ``eval/codebook_entropy_bits``, ``eval/num_images``.
  A temperature other than the model's own adds ``@tT`` to the key (``eval/rfid@8@t1``).
- while it runs: ``progress`` (fraction of the images done: the store's ETA reads it), ``eval/images_done``
  and ``eval/images_total``;
- events when it starts, resumes, stops, fails and finishes; ``results.json`` as an artifact.

SIGTERM / SIGINT (the manager's cancel): stop after the batch in hand, save the partial statistics, exit 130
(the run becomes ``stopped``). The next attempt continues them: with ``--resume`` (the manager's resume adds
it), or by itself when this run's partial statistics exist (a Slurm requeue starts the same command again).
Under ``torchrun`` only rank 0 writes to the run directory.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from trainers.sink import JsonlSink, MetricSink, NullSink

EXIT_INVALID, EXIT_STOPPED = 2, 130
OUT_DIR = "eval"  # RUN/eval: results.json and partial/
PER_STEP_METRICS = {"rfid": "rfid", "is": "is", "psnr": "psnr", "ssim": "ssim", "lpips": "lpips"}  # record -> key
PER_MODEL_METRICS = {"codebook_usage": "codebook_used", "codebook_entropy_bits": "codebook_entropy_bits",
                     "num_images": "num_images"}
PROGRESS_EVERY_S = 1.0


def metric_key(name: str, steps: int | None = None, temperature: float | None = None) -> str:
    """``eval/<name>`` for a per-model value, ``eval/<name>@<steps>`` (``@t<T>`` for an explicit temperature)."""
    key = f"eval/{name}"
    if steps is not None:
        key += f"@{int(steps)}"
    if temperature is not None:
        key += f"@t{float(temperature):g}"
    return key


def record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The store rows of one ``results.json`` record (one model x steps x temperature)."""
    out = {metric_key(key, record["steps"], record.get("temperature")): record.get(field)
           for field, key in PER_STEP_METRICS.items()}
    out.update({metric_key(key): record.get(field) for field, key in PER_MODEL_METRICS.items()})
    return {k: float(v) for k, v in out.items() if v is not None}


class _Progress:
    """Rank 0's images done -> ``progress`` rows, at most one a second (and always the last)."""

    def __init__(self, sink: MetricSink, step: int, num_images: int | None) -> None:
        self.sink, self.step, self.num_images = sink, step, num_images
        self.last = 0.0

    def __call__(self, done: int, share: int | None) -> None:
        now = time.monotonic()
        final = share is not None and done >= share
        if now - self.last < PROGRESS_EVERY_S and not final:
            return
        self.last = now
        row = {"eval/images_done": float(done)}
        if share and self.num_images:
            fraction = min(1.0, done / share)  # this rank's share stands for every rank's
            row = {"progress": fraction, "eval/images_done": float(round(fraction * self.num_images)),
                   "eval/images_total": float(self.num_images)}
        self.sink.log(self.step, row)


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, argparse.Namespace]:
    from analysis.cli import build_parser

    own = argparse.ArgumentParser(prog="python -m workbench.runs.eval_job", add_help=False)
    own.add_argument("--run-dir", required=True)
    own.add_argument("--checkpoint-step", type=int, default=0, help="the evaluated checkpoint's training step")
    mine, rest = own.parse_known_args(list(argv))
    args = build_parser().parse_args(["eval", *rest, "--out", str(Path(mine.run_dir) / OUT_DIR), "--no-progress"])
    return mine, args


def main(argv: Sequence[str] | None = None) -> int:
    from analysis.cli import inception_fetch_hint, print_table
    from analysis.eval_checkpoint import checkpoint_path
    from analysis.eval_run import EvaluationCancelled, run_evaluation
    from core.checkpoint import CheckpointError
    from core.config import ConfigError
    from core.perceptual import MissingWeightsError

    try:
        mine, args = _parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse printed the reason
        return EXIT_INVALID if exc.code else 0
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    sink: MetricSink = JsonlSink(mine.run_dir) if rank == 0 else NullSink()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        from analysis.cli import eval_config

        config = eval_config(args)
        if len(config.models) != 1:
            raise ValueError(f"--model: an evaluation job evaluates one model (its rows are that model's), "
                             f"got {len(config.models)}; submit one job per model")
        resuming = checkpoint_path(config.out, rank, world).exists()
        config = replace(config, resume=config.resume or resuming)
        sink.event(f"{'resuming' if resuming else 'starting'} evaluation of {config.models[0]}: steps "
                   f"{','.join(map(str, config.steps))}, {config.num_images or 'all'} images, {world} process(es)")
        result = run_evaluation(config, _Progress(sink, mine.checkpoint_step, config.num_images), stop.is_set)
    except EvaluationCancelled as exc:
        sink.event(f"stopped: {exc}", "warning")
        sink.close()
        print(f"stopped: {exc}", flush=True)
        return EXIT_STOPPED
    except (CheckpointError, ConfigError, MissingWeightsError, FileNotFoundError, ValueError) as exc:
        message = f"{exc}\n{inception_fetch_hint()}" if isinstance(exc, MissingWeightsError) else str(exc)
        sink.event(f"evaluation failed: {message}", "error")
        sink.close()
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_INVALID
    if rank == 0:
        for record in result.records:
            sink.log(mine.checkpoint_step, record_metrics(record))
        results = Path(config.out) / "results.json"
        sink.artifact(mine.checkpoint_step, "results", str(results))
        summary = ", ".join(f"rFID@{r['steps']} {r['rfid']:.4g}" for r in result.records if r["rfid"] is not None)
        sink.event(f"finished: {result.records[0]['num_images']} images; {summary}")
        print_table(result.records, ["label", "steps", "num_images", "rfid", "is", "psnr", "ssim", "lpips",
                                     "codebook_usage"])
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
