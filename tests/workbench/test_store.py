"""The DuckDB metrics store: exactly-once ingestion, queries, export, and owner crashes (real files,
real DuckDB, real processes)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.workbench.helpers.fake_runs import REPO_ROOT, fake_env, start_fake_trainer
from tests.workbench.helpers.fake_trainer import metric_keys, metric_value
from trainers.sink import JsonlSink
from workbench.runs.curves import ema_debiased, minmax_downsample
from workbench.runs.ingest import plan_rewinds
from workbench.runs.records import RunRecord, RunStatus, diff_configs
from workbench.runs.store import Store, StoreLockedError


def _run(store: Store, run_id: str, **fields) -> RunRecord:
    return store.create_run(RunRecord(id=run_id, run_dir=str(store.run_dir_for(run_id)), name=run_id, **fields))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _line(step: int, **metrics: float) -> str:
    return json.dumps({"step": step, "wall": 1000.0 + step, "metrics": metrics}) + "\n"


def test_ingest_takes_each_complete_line_once_and_waits_for_partial_ones(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "r")
    path = Path(run.run_dir)
    path.mkdir(parents=True)
    metrics = path / "metrics.jsonl"
    _append(metrics, _line(1, a=1.0, b=2.0) + _line(2, a=3.0, b=float("nan")) + '{"step": 3, "wa')
    assert store.ingest(["r"]).metrics == 3          # nan dropped, half line waits
    assert store.ingest(["r"]).metrics == 0          # nothing new: nothing twice
    _append(metrics, 'll": 1003.0, "metrics": {"a": 5.0}}\n' + "not json\n" + _line(4, a=7.0))
    report = store.ingest(["r"])
    assert (report.metrics, report.skipped_lines) == (2, 1)
    frame = store.metrics_frame("r")
    assert frame[["step", "key", "value"]].values.tolist() == [
        [1, "a", 1.0], [1, "b", 2.0], [2, "a", 3.0], [3, "a", 5.0], [4, "a", 7.0]]
    warnings = [e.message for e in store.events("r") if e.level == "warning"]
    assert len(warnings) == 1 and "byte" in warnings[0] and "not json" in warnings[0]
    store.close()
    reopened = Store(tmp_path)                       # offsets persisted with the rows
    assert reopened.ingest().metrics == 0 and reopened.metric_count("r") == 5
    reopened.close()


def test_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "r")
    sink = JsonlSink(run.run_dir)
    for step in range(1, 8):                         # killed after step 7 ...
        sink.log(step, {"loss": 10.0 + step})
    store.ingest(["r"])
    for step in range(6, 10):                        # ... resumed from checkpoint-5
        sink.log(step, {"loss": 20.0 + step})
    sink.close()
    store.ingest(["r"])
    frame = store.metrics_frame("r")
    assert frame["step"].tolist() == list(range(1, 10))
    assert frame["value"].tolist() == [11.0, 12.0, 13.0, 14.0, 15.0, 26.0, 27.0, 28.0, 29.0]
    store.close()


def test_downsampled_curve_keeps_spikes_and_the_global_extremes(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "r")
    rng = np.random.default_rng(0)
    values = rng.normal(size=20_000)
    values[12_345], values[777] = 50.0, -40.0       # one spike up, one down
    sink = JsonlSink(run.run_dir, fsync_every=0)
    for step, value in enumerate(values):
        sink.log(step, {"loss": value})
    sink.close()
    assert store.ingest().metrics == 20_000
    curve = store.curve("r", "loss", max_points=200)
    assert len(curve) <= 200
    assert curve["value"].max() == 50.0 and curve["value"].min() == -40.0
    assert 12_345 in curve["step"].tolist() and 777 in curve["step"].tolist()
    assert curve["step"].is_monotonic_increasing
    steps, kept = minmax_downsample(np.arange(20_000), values, 200)   # numpy twin used for smoothed curves
    assert steps.tolist() == curve["step"].tolist() and np.allclose(kept, curve["value"])
    small = store.curve("r", "loss", max_points=50_000)                  # fewer points than asked: all
    assert len(small) == 20_000
    store.close()


def test_ema_smoothing_matches_hand_computed_values(tmp_path):
    # w = 0.5: ema = 0.5, 1.25, 2.125 before debiasing; / (1 - 0.5**t) = 1.0, 5/3, 17/7
    assert np.allclose(ema_debiased(np.array([1.0, 2.0, 3.0]), 0.5), [1.0, 5.0 / 3.0, 17.0 / 7.0])
    assert np.allclose(ema_debiased(np.array([4.0, 4.0, 4.0]), 0.9), [4.0, 4.0, 4.0])   # debiasing: no pull to 0
    store = Store(tmp_path)
    run = _run(store, "r")
    sink = JsonlSink(run.run_dir)
    for step, value in zip((10, 20, 30), (1.0, 2.0, 3.0)):
        sink.log(step, {"loss": value})
    sink.close()
    store.ingest()
    smoothed = store.curve("r", "loss", smoothing=0.5)
    assert smoothed["step"].tolist() == [10, 20, 30]
    assert np.allclose(smoothed["value"], [1.0, 5.0 / 3.0, 17.0 / 7.0])
    with pytest.raises(ValueError, match="smoothing"):
        store.curve("r", "loss", smoothing=1.0)
    store.close()


def test_latest_value_per_key_per_run_and_compare_frame(tmp_path):
    store = Store(tmp_path)
    for run_id, offset in (("a", 0.0), ("b", 100.0)):
        run = _run(store, run_id)
        sink = JsonlSink(run.run_dir)
        for step in range(1, 6):
            sink.log(step, {"loss": offset + step, **({"eval/psnr": offset + 2 * step} if step % 2 == 0 else {})})
        sink.close()
    store.ingest()
    latest = store.latest()
    assert latest[["run_id", "key", "step", "value"]].values.tolist() == [
        ["a", "eval/psnr", 4, 8.0], ["a", "loss", 5, 5.0], ["b", "eval/psnr", 4, 108.0], ["b", "loss", 5, 105.0]]
    assert store.latest(["b"], keys=["loss"])["value"].tolist() == [105.0]
    frame = store.compare(["a", "b"], ["loss", "eval/psnr"])
    assert list(frame.columns) == ["run_id", "run_name", "key", "step", "value"]
    assert len(frame) == 2 * 5 + 2 * 2
    assert frame.query("run_id == 'b' and key == 'eval/psnr'")["value"].tolist() == [104.0, 108.0]
    assert store.keys() == ["eval/psnr", "loss"]
    store.close()


def test_config_diff_between_two_runs(tmp_path):
    store = Store(tmp_path)
    _run(store, "a", config={"optim": {"lr": 1e-4, "betas": [0.9, 0.99]}, "max_steps": 100, "ema": True})
    _run(store, "b", config={"optim": {"lr": 3e-4, "betas": [0.9, 0.99]}, "max_steps": 100,
                             "sfvr": {"replace_prob": 0.8}})
    diff = store.config_diff("a", "b")
    assert diff.changed == {"optim.lr": (1e-4, 3e-4)}
    assert diff.added == {"sfvr.replace_prob": 0.8}
    assert diff.removed == {"ema": True}
    assert diff.rows()[0] == ("ema", "removed", True, None)
    assert store.config_diff("a", "a").is_empty
    assert diff_configs({"x": 1}, {"x": 1.0}).is_empty and not diff_configs({"x": 1}, {"x": True}).is_empty
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(tmp_path, fmt):
    store = Store(tmp_path)
    run = _run(store, "r")
    sink = JsonlSink(run.run_dir)
    for step in range(1, 51):
        sink.log(step, {"loss": 1.0 / step, "lr": step * 1e-5})
    sink.close()
    store.ingest()
    out = store.export_run("r", tmp_path / f"out.{fmt}", fmt)
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    back = duckdb.sql(f"SELECT * FROM {reader}('{out}') ORDER BY step, key").df()
    original = store.metrics_frame("r")
    assert back["run_id"].unique().tolist() == ["r"]
    assert back["step"].tolist() == original["step"].tolist()
    assert back["key"].tolist() == original["key"].tolist()
    assert np.array_equal(back["value"].to_numpy(), original["value"].to_numpy())
    assert np.array_equal(back["wall"].to_numpy(), original["wall"].to_numpy())
    with pytest.raises(ValueError, match="format"):
        store.export_run("r", tmp_path / "x.json", "json")
    with pytest.raises(KeyError, match="nope"):
        store.export_run("nope", tmp_path / "x.csv")
    store.close()


def test_progress_and_eta_from_step_rate(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "r", config={"max_steps": 1000})
    _append_lines = "".join(json.dumps({"step": s, "wall": 500.0 + s / 20.0, "metrics": {"train/step": s}}) + "\n"
                            for s in range(10, 210, 10))   # 20 steps/s
    Path(run.run_dir).mkdir(parents=True)
    _append(Path(run.run_dir) / "metrics.jsonl", _append_lines)
    store.ingest()
    progress = store.progress("r")
    assert progress.step == 200 and progress.max_steps == 1000
    assert math.isclose(progress.fraction, 0.2) and math.isclose(progress.steps_per_s, 20.0)
    assert math.isclose(progress.eta_s, 40.0)
    other = _run(store, "p")                          # no max_steps: a `progress` metric instead
    Path(other.run_dir).mkdir(parents=True)
    _append(Path(other.run_dir) / "metrics.jsonl", "".join(
        json.dumps({"step": s, "wall": 100.0 + s, "metrics": {"progress": s / 100.0}}) + "\n" for s in range(1, 26)))
    store.ingest()
    progress = store.progress("p")
    assert progress.max_steps is None and math.isclose(progress.fraction, 0.25)
    assert math.isclose(progress.eta_s, 75.0)
    store.close()


def test_run_started_by_hand_is_registered_and_ingested_when_an_owner_opens(tmp_path):
    run_dir = tmp_path / "runs" / "by-hand"
    proc = start_fake_trainer(run_dir, "max_steps=30", "num_keys=3", "seed=7")
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    store = Store(tmp_path)
    [run] = store.list_runs()
    assert (run.id, run.status, run.run_dir) == ("by-hand", RunStatus.UNKNOWN, str(run_dir))
    report = store.ingest()
    assert report.metrics == 90 and report.artifacts == 3 and report.events == 2
    assert store.latest(["by-hand"], ["loss"])["value"].tolist() == [metric_value(30, 1)]
    store.close()


def test_second_owner_gets_a_clear_error(tmp_path):
    store = Store(tmp_path)
    done = subprocess.run([sys.executable, "-m", "workbench.runs.store", str(tmp_path), "runs"], cwd=REPO_ROOT,
                          env=fake_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "held by another process" in done.stderr
    store.close()
    lock_holder = subprocess.Popen([sys.executable, "-c", "import duckdb, time; "
                                    f"c = duckdb.connect({str(tmp_path / 'metrics.duckdb')!r}); "
                                    "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert lock_holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="held by another process"):
            Store(tmp_path)
    finally:
        lock_holder.kill()
        lock_holder.wait()


def test_owner_killed_mid_ingest_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path):
    writers = [start_fake_trainer(tmp_path / "runs" / f"w{i}", "max_steps=3000", "num_keys=2",
                                  "step_sleep=0.0002", "checkpoint_every=1000") for i in range(3)]
    owner = subprocess.Popen([sys.executable, "-m", "workbench.runs.store", str(tmp_path), "ingest", "--follow",
                              "--interval", "0.01", "--batch-lines", "50", "--verbose"],
                             cwd=REPO_ROOT, env=fake_env(), stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    for line in owner.stdout:
        acknowledged = int(line.split("=")[1])
        if acknowledged >= 3000:
            break
    os.kill(owner.pid, signal.SIGKILL)                # abruptly, most likely inside a transaction
    owner.wait()
    assert acknowledged >= 3000
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    store = Store(tmp_path)                           # the DB opens after the crash
    assert store.metric_count() >= acknowledged       # nothing acknowledged is lost
    store.ingest()
    expected = 3 * 3000 * 2
    assert store.metric_count() == expected
    for i in range(3):
        frame = store.metrics_frame(f"w{i}")
        assert not frame.duplicated(["step", "key"]).any()
        assert frame["step"].tolist() == [s for s in range(1, 3001) for _ in range(2)]
        keys = metric_keys(2)
        assert frame["value"].tolist() == [metric_value(s, keys.index(k)) for s, k in zip(frame["step"], frame["key"])]
    store.close()


def test_cli_lists_runs_and_exports(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "r", stage="1", status=RunStatus.DONE)
    sink = JsonlSink(run.run_dir)
    sink.log(1, {"loss": 0.5})
    sink.close()
    store.ingest()
    store.close()
    cli = [sys.executable, "-m", "workbench.runs.store", str(tmp_path)]
    listed = subprocess.run([*cli, "runs"], cwd=REPO_ROOT, env=fake_env(), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "done" in listed.stdout and " r " in f" {listed.stdout} "
    out = tmp_path / "r.parquet"
    exported = subprocess.run([*cli, "export", "r", "--format", "parquet", "--out", str(out)], cwd=REPO_ROOT,
                              env=fake_env(), capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert duckdb.sql(f"SELECT step, key, value FROM read_parquet('{out}')").fetchall() == [(1, "loss", 0.5)]


def test_rewind_plan_handles_several_resumes_inside_one_chunk():
    plan = plan_rewinds(np.array([1, 2, 3, 4, 2, 3, 5, 1, 2]), None)   # resumed at 2, later at 1
    assert plan.keep.tolist() == [False] * 7 + [True, True]
    assert (plan.purge_from, plan.max_step) == (1, 2)
    plan = plan_rewinds(np.array([5, 6, 7]), 10)                        # rewinds below stored rows
    assert plan.keep.tolist() == [True, True, True] and (plan.purge_from, plan.max_step) == (5, 7)
    plan = plan_rewinds(np.array([3, 3, 4]), 3)                         # equal steps: no rewind
    assert (plan.keep, plan.purge_from, plan.max_step) == (None, None, 4)
    # killed right after logging step 26 (checkpoint 25), resumed at 26: only the explicit marker can tell
    plan = plan_rewinds(np.array([25, 26, 26, 26, 27]), None, np.array([False, False, True, False, False]))
    assert plan.keep.tolist() == [True, False, True, True, True] and (plan.purge_from, plan.max_step) == (26, 27)


def test_resume_at_the_last_logged_step_replaces_its_rows(tmp_path):
    """The race seen under load: the run dies right after logging the step after its checkpoint."""
    store = Store(tmp_path)
    run = _run(store, "r")
    sink = JsonlSink(run.run_dir)
    for step in (1, 2, 3):
        sink.log(step, {"loss": float(step)})
    store.ingest()
    sink.rewind(3)  # resumed from checkpoint 2
    sink.log(3, {"loss": 30.0})
    sink.log(4, {"loss": 40.0})
    sink.close()
    store.ingest()
    frame = store.metrics_frame(run.id)
    store.close()
    assert frame[["step", "value"]].values.tolist() == [[1, 1.0], [2, 2.0], [3, 30.0], [4, 40.0]]


def test_metrics_frame_can_keep_only_the_last_steps(tmp_path):
    with Store(tmp_path) as store:
        run = _run(store, "r")
        Path(run.run_dir).mkdir(parents=True)
        _append(Path(run.run_dir) / "metrics.jsonl", "".join(_line(step, a=float(step), b=-1.0) for step in range(1, 11)))
        assert store.ingest(["r"]).metrics == 20
        assert store.metrics_frame("r", last_steps=3)["step"].tolist() == [8, 8, 9, 9, 10, 10]
        assert store.metrics_frame("r", ["a"], last_steps=2)["step"].tolist() == [9, 10]
        assert len(store.metrics_frame("r")) == 20
