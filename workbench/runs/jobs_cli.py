"""Submit a run or a sweep from the command line, locally or to Slurm, and watch it:

    python -m workbench.runs.jobs_cli WORKSPACE --stage S [--config C] [--executor local|slurm] [--device cpu]
        [--partition P --nodes N --gpus-per-node G --cpus-per-task C --mem-gb M --time-min T --account A --qos Q
         --extra-sbatch LINE ...] [--grid key=v1,v2 ...] [--name NAME] [--no-wait] [key=value ...]

Slurm fields left out come from ``WORKSPACE/slurm.yaml``. The command owns the workspace's store while
it runs (close the app first). ``--no-wait`` returns once the runs are handed to their executor; Slurm
runs go on without it, and the next owner of the workspace (the app, this command) re-attaches them.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from workbench.runs.executors.slurm_options import SlurmOptions, load_slurm_defaults
from workbench.runs.manager import InvalidConfigError, JobManager
from workbench.runs.records import STAGES, RunStatus
from workbench.services.training_form import parse_grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workbench.runs.jobs_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--config")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--device", default="cpu", help="local runs: cpu, cuda:0 or cuda:0,1")
    parser.add_argument("--grid", action="append", default=[], help="sweep axis key=v1,v2 (repeatable)")
    parser.add_argument("--name")
    parser.add_argument("--no-wait", action="store_true", help="return once the runs are started or submitted")
    slurm = parser.add_argument_group("Slurm (defaults from WORKSPACE/slurm.yaml)")
    for f in dataclasses.fields(SlurmOptions):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):
            slurm.add_argument(flag, dest=f"slurm_{f.name}", action="append")
        else:
            slurm.add_argument(flag, dest=f"slurm_{f.name}", type=type(f.default))
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4")
    return parser.parse_intermixed_args(argv)


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    """``slurm.yaml`` with the flags given on top."""
    given = {f.name: getattr(args, f"slurm_{f.name}") for f in dataclasses.fields(SlurmOptions)}
    chosen = {name: value for name, value in given.items() if value is not None}
    return SlurmOptions.from_mapping({**load_slurm_defaults(args.workspace).to_dict(), **chosen})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        slurm = slurm_options(args) if args.executor == "slurm" else None
        grid = parse_grid("\n".join(args.grid))
        with JobManager(args.workspace, start=False) as manager:
            if grid:
                run_ids = manager.submit_sweep(args.stage, args.config, grid, args.overrides, device=args.device,
                                               name=args.name, slurm=slurm).run_ids
            else:
                run_ids = [manager.submit(args.stage, args.config, args.overrides, device=args.device,
                                          name=args.name, slurm=slurm).id]
            return _watch(manager, run_ids, until_started=args.no_wait)
    except (InvalidConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _watch(manager: JobManager, run_ids: list[str], until_started: bool) -> int:
    """Tick the manager, printing each status change, until every run ended (or left the queue)."""
    seen: dict[str, str] = {}
    try:
        while True:
            manager.tick()
            runs = [manager.store.get_run(run_id) for run_id in run_ids]
            for run in runs:
                if seen.get(run.id) != run.status:
                    seen[run.id] = run.status
                    where = f" (Slurm job {run.job_id})" if run.job_id else ""
                    print(f"{run.id}: {run.status}{where}", flush=True)
            if all(r.status in RunStatus.TERMINAL for r in runs) or (until_started and all(
                    r.status != RunStatus.QUEUED for r in runs)):
                break
            time.sleep(manager.poll_interval)
    except KeyboardInterrupt:
        print("stopped watching; the runs go on", file=sys.stderr)
        return 130
    failed = [r for r in runs if r.status in RunStatus.FAILURES]
    for run in failed:
        print(f"{run.id}: {run.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
