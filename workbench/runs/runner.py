"""``python -m workbench.runs.runner --run-dir DIR -- COMMAND...``: start a trainer and record how it ends.

The job manager starts every run through this small wrapper, as the leader of a new session. It
writes ``process.json`` (its pid and start time, so a later owner can re-attach), sends the trainer's
stdout and stderr to ``train.log``, and writes ``exit.json`` with the trainer's exit status. That
file is what lets an owner that was restarted while the run went on learn the true end of the run
(a process that is not your child leaves no exit status to wait for).

Signals are meant for the whole process group (``os.killpg``). The wrapper itself catches SIGTERM and
SIGINT and keeps waiting, so it survives a graceful stop and records the trainer's exit code; it
does not forward them (the trainer already got its own copy from the group signal, and a second
SIGTERM often means "quit now" to a trainer). Only SIGKILL ends it without ``exit.json``.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workbench.runs.procs import process_start_time
from workbench.runs.rundir import LOG_FILE, ExitInfo, ProcessInfo, write_exit_info, write_process_info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: python -m workbench.runs.runner --run-dir DIR -- COMMAND...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="workbench.runs.runner")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # handlers (unlike SIG_IGN) reset to default in the child
    pid = os.getpid()
    with open(run_dir / LOG_FILE, "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.write(f"workbench.runs.runner: cannot start {command!r}: {exc}\n".encode())
            write_exit_info(run_dir, ExitInfo(127, time.time()))
            return 127
        write_process_info(run_dir, ProcessInfo(pid, process_start_time(pid), child.pid))
        exit_code = child.wait()
    write_exit_info(run_dir, ExitInfo(exit_code, time.time()))
    return exit_code if exit_code >= 0 else 128 - exit_code


if __name__ == "__main__":
    sys.exit(main())
