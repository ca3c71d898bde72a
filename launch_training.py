#!/usr/bin/env python
"""Run one training stage: python launch_training.py --stage {teacher,1,2,3,generator} --config FILE [key=value ...]

Exit codes: 0 finished, 2 invalid configuration (nothing was started), 130 interrupted (a
checkpoint was saved; run again with --resume to continue), 1 any other failure.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from trainers.stage_names import STAGES  # noqa: E402  (imports nothing: --help stays fast)

EXIT_INVALID_CONFIG = 2
EXIT_INTERRUPTED = 130


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--config", help="YAML run file (ours, or an official stage YAML)")
    parser.add_argument("--run-dir", help="where checkpoints, metrics and images go (default runs/<stage>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the resolved config, then exit")
    parser.add_argument("--skip-path-check", action="store_true",
                        help="with --dry-run: judge the config alone, not whether its shard/weight paths exist here")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (for log files)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sfvr.replace_prob=0.8 max_steps=2000")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import yaml

    from core.config import ConfigError
    from trainers.config import load_config

    notes: list[str] = []  # e.g. the official keys that mean nothing here: said once, at start
    try:
        cfg = load_config(args.stage, args.config, args.overrides, notes=notes,
                          check_paths=not (args.dry_run and args.skip_path_check))
    except ConfigError as err:
        print(f"invalid config: {err}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    for note in notes:
        print(note, file=sys.stderr)
    if args.dry_run:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    run_dir = Path(args.run_dir or f"runs/stage-{args.stage}")
    if not args.resume and (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        print(f"{run_dir} already holds checkpoints: pass --resume to continue it or choose another --run-dir",
              file=sys.stderr)
        return EXIT_INVALID_CONFIG

    stop = {"requested": False}

    def request_stop(signum: int, frame: object) -> None:
        if stop["requested"]:  # a second signal: leave at once
            raise KeyboardInterrupt
        stop["requested"] = True
        print(f"\nsignal {signum}: saving a checkpoint, then stopping", file=sys.stderr)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from trainers.loop import train

    result = train(cfg, run_dir, resume=args.resume, progress=not args.no_progress, should_stop=lambda: stop["requested"])
    if result.interrupted:
        return EXIT_INTERRUPTED
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns here; one line per run
        print(f"done: step {result.final_step}, model in {result.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
