"""A stand-in for ``launch_training.py`` with the same CLI and exit contract, for job/store tests.

Config (YAML, plus ``key=value`` overrides): ``max_steps`` steps, each logging ``num_keys`` metrics
(``train/step``, ``loss``, ``k2``, ...) through ``trainers.sink.JsonlSink``; ``step_sleep`` seconds per
step; a checkpoint ``checkpoints/checkpoint-<step>/state.json`` every ``checkpoint_every`` steps;
``fail_at_step`` raises there (exit 1); ``ignore_sigterm`` makes it deaf to SIGTERM/SIGINT.
Exit codes: 0 done, 2 invalid config, 130 interrupted after a checkpoint, 1 crash.
Every metric value is a known function of (step, key) so tests can check rows exactly.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import yaml

from trainers.sink import JsonlSink

DEFAULTS = {"max_steps": 100, "num_keys": 4, "step_sleep": 0.0, "checkpoint_every": 10, "fail_at_step": -1,
            "ignore_sigterm": False, "seed": 0, "optim": {"lr": 0.001}}


def metric_value(step: int, index: int) -> float:
    """The value logged for key number ``index`` at ``step`` (index 0 is ``train/step``)."""
    return float(step) if index == 0 else 1.0 / (step + index) + 0.001 * index


def metric_keys(num_keys: int) -> list[str]:
    return ["train/step", "loss", *[f"k{i}" for i in range(2, num_keys)]][:num_keys]


def resolve(config_path: str | None, overrides: list[str]) -> dict:
    config = json.loads(json.dumps(DEFAULTS))
    if config_path:
        config.update(yaml.safe_load(Path(config_path).read_text()) or {})
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        dotted, raw = item.split("=", 1)
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    if not isinstance(config["max_steps"], int) or config["max_steps"] <= 0:
        raise ValueError(f"max_steps must be a positive integer, got {config['max_steps']!r}")
    if not isinstance(config["optim"]["lr"], float) or config["optim"]["lr"] <= 0:
        raise ValueError(f"optim.lr must be a positive float, got {config['optim']['lr']!r}")
    return config


def newest_checkpoint(run_dir: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*")
             if (p / "state.json").exists()]
    return max(steps, default=0)


def save_checkpoint(run_dir: Path, step: int, sink: JsonlSink) -> None:
    path = run_dir / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "state.json").write_text(json.dumps({"step": step}))
    sink.artifact(step, "checkpoint", str(path))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", required=True, choices=["teacher", "1", "2", "3", "generator"])
    parser.add_argument("--config")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    try:
        config = resolve(args.config, args.overrides)
    except ValueError as err:
        print(f"invalid config: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0

    stop = {"requested": False}
    if not config["ignore_sigterm"]:
        def request_stop(signum: int, frame: object) -> None:
            stop["requested"] = True
        handler = request_stop
    else:
        def handler(signum: int, frame: object) -> None:
            pass
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    run_dir = Path(args.run_dir)
    sink = JsonlSink(run_dir, fsync_every=0)
    start = newest_checkpoint(run_dir) + 1 if args.resume else 1
    keys = metric_keys(config["num_keys"])
    sink.event(f"stage {args.stage} starting at step {start}")
    if args.resume:
        sink.rewind(start)  # as trainers.loop does
    print(f"starting at step {start}", flush=True)
    for step in range(start, config["max_steps"] + 1):
        if step == config["fail_at_step"]:
            raise RuntimeError(f"fake failure at step {step}")
        sink.log(step, {key: metric_value(step, i) for i, key in enumerate(keys)})
        if step % config["checkpoint_every"] == 0:
            save_checkpoint(run_dir, step, sink)
        if stop["requested"]:
            save_checkpoint(run_dir, step, sink)
            sink.event(f"interrupted at step {step}", level="warning")
            sink.close()
            return 130
        if config["step_sleep"]:
            time.sleep(config["step_sleep"])
    sink.event("done")
    sink.close()
    print(f"done: step {config['max_steps']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
