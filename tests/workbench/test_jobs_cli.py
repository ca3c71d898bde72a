"""``python -m workbench.runs.jobs_cli``: a real tiny local teacher run submitted from the command line reaches
"done" with its metrics in the workspace's store; an invalid config is refused with exit code 2, nothing queued."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.trainers.shard_fixtures import write_shards
from tests.trainers.test_training import SMALL
from workbench.runs.records import RunStatus
from workbench.runs.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.runs.jobs_cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_jobs_cli_runs_a_local_teacher_run_to_done(tmp_path: Path):
    shards = write_shards(tmp_path / "shards", "train", 16, seed=0)
    done = _cli(str(tmp_path / "ws"), "--stage", "teacher", "--name", "cli-run", *SMALL,
                f"data.train_shards={shards}", "max_steps=4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert ": done" in done.stdout and ": running" in done.stdout  # each status change printed once
    with Store(tmp_path / "ws") as store:
        (run,) = store.list_runs()
        assert (run.name, run.status, run.executor) == ("cli-run", RunStatus.DONE, "local")
        assert store.latest([run.id], ["train/step"])["step"].item() == 4


def test_jobs_cli_refuses_an_invalid_config_before_queueing(tmp_path: Path):
    refused = _cli(str(tmp_path / "ws"), "--stage", "teacher", "data.train_shards=x.tar", "max_steps=0")
    assert refused.returncode == 2 and "max_steps" in refused.stderr and "Traceback" not in refused.stderr
    with Store(tmp_path / "ws") as store:
        assert store.list_runs() == []
