"""The job manager with real processes (the fake trainer) and a real DuckDB store."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.workbench.helpers.fake_runs import FAKE_LAUNCHER, make_manager, wait_until, write_config
from tests.workbench.helpers.fake_trainer import metric_keys, metric_value
from workbench.runs.manager import (ACCELERATE_LAUNCH, InvalidConfigError, LaunchSpec, build_command, device_env,
                            parse_devices)
from workbench.runs.records import RunStatus
from workbench.runs.store import Store


def _assert_exact_rows(store: Store, run_id: str, max_steps: int, num_keys: int) -> None:
    frame = store.metrics_frame(run_id)
    keys = metric_keys(num_keys)
    assert len(frame) == max_steps * num_keys
    assert not frame.duplicated(["step", "key"]).any()
    assert sorted(set(frame["step"])) == list(range(1, max_steps + 1))
    expected = [metric_value(s, keys.index(k)) for s, k in zip(frame["step"], frame["key"])]
    assert frame["value"].tolist() == expected


def test_four_jobs_every_row_arrives_exactly_once_while_a_reader_polls(tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=1250, num_keys=4, step_sleep=0.0005, checkpoint_every=500)
    manager = make_manager(tmp_path / "ws", device_limits={"cpu": 4})   # validates with the trainer's --dry-run
    runs = [manager.submit("1", config) for _ in range(4)]
    assert {r.status for r in runs} == {RunStatus.QUEUED} and runs[0].config["max_steps"] == 1250
    seen: dict[str, list[int]] = {r.id: [] for r in runs}
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for run in runs:
                    seen[run.id].append(manager.store.metric_count(run.id))
                manager.store.latest()
                manager.store.curve(runs[0].id, "loss", max_points=100)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    finished = [manager.wait(r.id, timeout=60) for r in runs]
    stop.set()
    thread.join()
    manager.close()
    assert not errors
    assert [r.status for r in finished] == [RunStatus.DONE] * 4 and {r.exit_code for r in finished} == {0}
    for run in runs:
        counts = seen[run.id]
        assert counts == sorted(counts) and counts[-1] <= 5000       # grows, never overshoots
    assert any(0 < c < 5000 for counts in seen.values() for c in counts)   # the reader saw runs mid-way
    with Store(tmp_path / "ws") as store:
        for run in runs:
            _assert_exact_rows(store, run.id, 1250, 4)
        assert store.metric_count() == 20_000


def test_sigkilled_job_keeps_its_rows_fails_and_resumes_to_completion(tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=300, num_keys=2, step_sleep=0.004, checkpoint_every=25)
    manager = make_manager(tmp_path / "ws")
    run = manager.submit("2", config)
    wait_until(lambda: manager.store.metric_count(run.id) >= 2 * 60)
    run = manager.store.get_run(run.id)
    os.killpg(run.pid, signal.SIGKILL)                # the whole process group, runner included
    failed = manager.wait(run.id, timeout=20)
    assert failed.status == RunStatus.FAILED and failed.exit_code == -signal.SIGKILL
    assert "killed by SIGKILL" in failed.error
    complete_lines = (Path(run.run_dir) / "metrics.jsonl").read_text().count("\n")
    assert manager.store.metric_count(run.id) == 2 * complete_lines >= 120   # rows so far are kept
    killed_at = manager.store.latest([run.id], ["train/step"])["step"].item()
    checkpoints = [int(p.parent.name.split("-")[1]) for p in Path(run.run_dir).glob("checkpoints/*/state.json")]
    assert killed_at < 300 and killed_at - 25 <= max(checkpoints) <= killed_at

    resumed = manager.resume(run.id)
    assert resumed.status == RunStatus.QUEUED and resumed.command[-1] == "--resume"
    done = manager.wait(run.id, timeout=30)
    manager.close()
    assert done.status == RunStatus.DONE and done.exit_code == 0
    log = (Path(run.run_dir) / "train.log").read_text()
    restart = int(log.split("starting at step ")[2].split()[0])
    assert restart == max(checkpoints) + 1                 # continued from the newest checkpoint
    with Store(tmp_path / "ws") as store:
        _assert_exact_rows(store, run.id, 300, 2)     # re-logged steps replaced, not duplicated


def test_flood_of_jobs_is_queued_within_the_device_limit(tmp_path):
    # 0.75 s jobs: long enough to overlap even when a loaded machine starts the second one late
    config = write_config(tmp_path / "c.yaml", max_steps=15, num_keys=2, step_sleep=0.05)
    manager = make_manager(tmp_path / "ws", device_limits={"cpu": 2}, validator=lambda spec: {"max_steps": 15})
    runs = [manager.submit("1", config) for _ in range(8)]
    peak = 0
    while any(manager.store.get_run(r.id).status not in RunStatus.TERMINAL for r in runs):
        peak = max(peak, manager.running_per_device().get("cpu", 0))
        time.sleep(0.01)
    finished = [manager.store.get_run(r.id) for r in runs]
    manager.close()
    assert [r.status for r in finished] == [RunStatus.DONE] * 8        # none dropped
    assert peak == 2
    events = sorted([(r.started_at, 1) for r in finished] + [(r.ended_at, -1) for r in finished],
                    key=lambda e: (e[0], e[1]))
    running = overlap = 0
    for _, delta in events:
        running += delta
        overlap = max(overlap, running)
    assert overlap == 2


def test_invalid_config_is_rejected_before_anything_is_queued(tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=5)
    manager = make_manager(tmp_path / "ws", start=False)
    with pytest.raises(InvalidConfigError, match="optim.lr must be a positive float"):
        manager.submit("1", config, ["optim.lr=-1.0"])
    with pytest.raises(InvalidConfigError, match="unknown config key"):
        manager.submit("1", config, ["bogus=3"])
    with pytest.raises(InvalidConfigError, match=r"\[1\].*optim.lr must be a positive float"):
        manager.submit_sweep("1", config, {"optim.lr": [1e-3, -1.0]}, name="bad")
    with pytest.raises(InvalidConfigError, match="config file not found"):
        manager.submit("1", tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="stage must be one of"):
        manager.submit("4", config)
    with pytest.raises(ValueError, match="device must be"):
        manager.submit("1", config, device="gpu0")
    assert manager.store.list_runs() == [] and manager.store.list_sweeps() == []
    assert not any((tmp_path / "ws" / "runs").iterdir())
    manager.close()


def test_sweep_runs_one_job_per_grid_point(tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=5, num_keys=2)
    manager = make_manager(tmp_path / "ws", device_limits={"cpu": 4})
    sweep = manager.submit_sweep("3", config, {"optim.lr": [3e-5, 1e-3], "max_steps": [4, 6]}, name="lr-x-steps")
    runs = [manager.wait(run_id, timeout=30) for run_id in sweep.run_ids]
    assert [r.status for r in runs] == [RunStatus.DONE] * 4
    assert {r.sweep_id for r in runs} == {sweep.id}
    assert [r.overrides for r in runs] == [["optim.lr=3.0e-05", "max_steps=4"], ["optim.lr=3.0e-05", "max_steps=6"],
                                           ["optim.lr=0.001", "max_steps=4"], ["optim.lr=0.001", "max_steps=6"]]
    assert [(r.config["optim"]["lr"], r.config["max_steps"]) for r in runs] == [
        (3e-5, 4), (3e-5, 6), (1e-3, 4), (1e-3, 6)]
    assert [manager.store.metric_count(r.id) for r in runs] == [8, 12, 8, 12]
    diff = manager.store.config_diff(runs[0].id, runs[3].id)
    assert diff.changed == {"optim.lr": (3e-5, 1e-3), "max_steps": (4, 6)}
    assert manager.store.get_sweep(sweep.id).run_ids == sweep.run_ids
    manager.close()


def test_crash_is_reported_with_exit_code_and_log_tail(tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=50, num_keys=2, fail_at_step=7)
    manager = make_manager(tmp_path / "ws", validator=lambda spec: {})
    run = manager.wait(manager.submit("1", config).id, timeout=30)
    manager.close()
    assert run.status == RunStatus.FAILED and run.exit_code == 1
    assert "exit code 1" in run.error and "RuntimeError: fake failure at step 7" in run.error
    with Store(tmp_path / "ws") as store:
        assert store.metric_count(run.id) == 2 * 6


def test_cancel_stops_gracefully_or_kills_after_the_timeout(tmp_path):
    polite = write_config(tmp_path / "p.yaml", max_steps=100_000, num_keys=2, step_sleep=0.002)
    deaf = write_config(tmp_path / "d.yaml", max_steps=100_000, num_keys=2, step_sleep=0.002, ignore_sigterm=True)
    manager = make_manager(tmp_path / "ws", validator=lambda spec: {}, device_limits={"cpu": 2}, stop_timeout=0.5)
    a, b = manager.submit("1", polite), manager.submit("1", deaf)
    wait_until(lambda: min(manager.store.metric_count(a.id), manager.store.metric_count(b.id)) >= 20)
    assert manager.cancel(a.id).status == RunStatus.STOPPING
    manager.cancel(b.id)
    a, b = manager.wait(a.id, timeout=20), manager.wait(b.id, timeout=20)
    assert (a.status, a.exit_code) == (RunStatus.STOPPED, 130)            # checkpoint, then exit 130
    last = manager.store.latest([a.id], ["train/step"])["step"].item()
    assert (Path(a.run_dir) / "checkpoints" / f"checkpoint-{last}" / "state.json").exists()
    assert (b.status, b.exit_code) == (RunStatus.STOPPED, -signal.SIGKILL)  # ignored SIGTERM: killed
    manager.device_limits["cuda:7"] = 0                                      # a device with no free slot
    queued = manager.submit("1", polite, device="cuda:7")
    time.sleep(0.2)
    assert manager.store.get_run(queued.id).status == RunStatus.QUEUED
    cancelled = manager.cancel(queued.id)
    assert (cancelled.status, cancelled.started_at) == (RunStatus.STOPPED, None)
    manager.close()


def test_new_owner_reattaches_live_runs_marks_dead_ones_lost_and_keeps_the_queue(tmp_path):
    ws = tmp_path / "ws"
    short = write_config(tmp_path / "s.yaml", max_steps=150, num_keys=4, step_sleep=0.01)
    endless = write_config(tmp_path / "e.yaml", max_steps=100_000, num_keys=2, step_sleep=0.01)
    first = make_manager(ws, validator=lambda spec: {"max_steps": 150}, device_limits={"cpu": 2})
    live, doomed = first.submit("1", short), first.submit("1", endless)
    waiting = first.submit("1", short)
    wait_until(lambda: first.store.metric_count(doomed.id) > 0 and first.store.metric_count(live.id) > 0)
    doomed = first.store.get_run(doomed.id)
    first.close()                                        # the owner goes away; its runs do not
    os.killpg(doomed.pid, signal.SIGKILL)                # one dies while nobody watches
    wait_until(lambda: not _alive(doomed.pid))

    second = make_manager(ws, device_limits={"cpu": 2})
    lost = second.store.get_run(doomed.id)
    assert lost.status == RunStatus.LOST and "no exit record" in lost.error
    assert second.store.get_run(live.id).status == RunStatus.RUNNING    # re-attached
    live_done = second.wait(live.id, timeout=30)
    assert (live_done.status, live_done.exit_code) == (RunStatus.DONE, 0)   # true end, from exit.json
    waiting_done = second.wait(waiting.id, timeout=30)                       # the queue survived
    assert waiting_done.status == RunStatus.DONE
    _assert_exact_rows(second.store, live.id, 150, 4)
    assert second.store.progress(live.id).fraction == 1.0
    second.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_commands_and_device_pinning():
    spec = LaunchSpec("2", "/cfg.yaml", ("optim.lr=0.001",), "/ws/runs/x")
    assert build_command(FAKE_LAUNCHER, spec, ("cpu",)) == [
        *FAKE_LAUNCHER, "--stage", "2", "--run-dir", "/ws/runs/x", "--config", "/cfg.yaml", "optim.lr=0.001",
        "--no-progress"]
    multi = build_command([sys.executable, "launch_training.py"], spec, parse_devices("cuda:0,1"))
    assert multi[:len(ACCELERATE_LAUNCH) + 3] == [*ACCELERATE_LAUNCH, "--num_processes", "2", "launch_training.py"]
    assert parse_devices("cuda:0,1") == ("cuda:0", "cuda:1") and parse_devices("CPU") == ("cpu",)
    assert device_env(("cuda:0", "cuda:1")) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert device_env(("cpu",)) == {"CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(ValueError, match="names a GPU twice"):
        parse_devices("cuda:1,1")
