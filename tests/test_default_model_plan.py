"""scripts/train_default_model.py's plan and scheduler: order, seeds, cores, failures (runs faked, no training)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.test_default_model import load_script

plan_module = load_script("train_default_model")


def test_plan_reads_only_earlier_runs_and_repeats_stage2_with_three_seeds() -> None:
    names = [run.name for run in plan_module.PLAN]
    assert len(names) == len(set(names))
    for i, run in enumerate(plan_module.PLAN):
        assert run.config_file.is_file(), run.config_file
        assert set(run.reads.values()) <= set(names[:i]), run.name  # listed after everything it reads
    seeds = {(run.config, run.seed) for run in plan_module.PLAN if run.stage == "2"}
    assert seeds == {(f"stage2_{v}", s) for v in ("sfvr", "vanilla") for s in (42, 43, 44)}
    # the shipped stage 3 and the generator build on one stage-2 run; the other recipe gets a stage 3 too
    reads = {run.name: run.reads for run in plan_module.PLAN}
    shipped = f"stage2_{plan_module.SHIPPED_RECIPE}"
    assert reads["stage3"]["init_weights"] == reads["generator"]["tokenizer_path"] == shipped
    assert reads[f"stage3_{plan_module.OTHER_RECIPE}"]["init_weights"] == f"stage2_{plan_module.OTHER_RECIPE}"
    extra = plan_module.overrides(plan_module.PLAN[3], Path("/r"), "train.tar", "val.tar", None)
    assert "seed=42" in extra and "init_weights=/r/stage1/model" in extra
    # the TiTok baseline: SFTok's stage-1 recipe with the family switched, once per stage-2 seed
    titok = [run for run in plan_module.PLAN if "model_family=titok" in run.settings]
    assert {(run.stage, run.config, run.seed) for run in titok} == {("1", "stage1", s) for s in (42, 43, 44)}
    extra = plan_module.overrides(titok[0], Path("/r"), "train.tar", "val.tar", None)
    assert extra[-1] == "model_family=titok" and "teacher_path=/r/teacher/model" in extra


def fake_start(log: Path, fail: str | None = None):
    """A start() whose 'run' logs when it began and ended and writes the model file a finished run leaves."""
    def start(run, runs: Path, extra: list[str], threads: int):
        import subprocess

        model = runs / run.name / "model" / "model.safetensors"
        code = (f"import json, time, pathlib; log = open({str(log)!r}, 'a'); "
                f"log.write(json.dumps(['start', {run.name!r}, time.time(), {threads}]) + '\\n'); log.flush(); "
                "time.sleep(0.3); "
                + ("raise SystemExit(3)" if run.name == fail else
                   f"p = pathlib.Path({str(model)!r}); p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(b''); "
                   f"log.write(json.dumps(['end', {run.name!r}, time.time(), {threads}]) + '\\n')"))
        return subprocess.Popen([sys.executable, "-c", code])
    return start


def test_scheduler_keeps_to_its_slots_and_starts_a_run_after_what_it_reads(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    monkeypatch.setattr(plan_module, "start", fake_start(log))
    plan = plan_module.PLAN
    (tmp_path / "teacher" / "model").mkdir(parents=True)
    (tmp_path / "teacher" / "model" / "model.safetensors").write_bytes(b"")  # finished already: not run again
    plan_module.run_plan(plan, tmp_path, {run.name: [] for run in plan}, slots=2, threads=1, poll_s=0.02)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    started = [name for kind, name, _, _ in events if kind == "start"]
    assert sorted(started) == sorted(run.name for run in plan if run.name != "teacher")
    ends = {name: t for kind, name, t, _ in events if kind == "end"}
    starts = {name: t for kind, name, t, _ in events if kind == "start"}
    threads = {name: n for kind, name, _, n in events if kind == "start"}
    # stage 1 and the first TiTok baseline (it reads only the teacher) are ready at once: side by side, one thread each
    assert threads["stage1"] == threads["stage1_titok"] == threads["stage2_sfvr"] == threads["stage2_vanilla"] == 1
    assert max(starts["stage1"], starts["stage1_titok"]) < min(ends.values())
    for run in plan[1:]:
        assert all(ends[r] <= starts[run.name] for r in run.reads.values() if r != "teacher"), run.name
    running, most = 0, 0
    for kind, _, _, _ in sorted(events, key=lambda e: e[2]):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert most == 2  # the two stage-2 recipes (and later runs) overlap, never three


def test_a_run_that_is_ready_alone_takes_every_slots_threads(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    monkeypatch.setattr(plan_module, "start", fake_start(log))
    plan = [run for run in plan_module.PLAN if run.name in ("teacher", "stage1", "stage2_sfvr", "stage2_vanilla")]
    (tmp_path / "teacher" / "model").mkdir(parents=True)
    (tmp_path / "teacher" / "model" / "model.safetensors").write_bytes(b"")  # adopted: stage 1 is ready, alone
    plan_module.run_plan(plan, tmp_path, {run.name: [] for run in plan}, slots=2, threads=1, poll_s=0.02)
    threads = {name: n for kind, name, _, n in (json.loads(line) for line in log.read_text().splitlines())
               if kind == "start"}
    assert threads == {"stage1": 2, "stage2_sfvr": 1, "stage2_vanilla": 1}


def test_a_failed_run_stops_the_plan_and_names_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "start", fake_start(tmp_path / "log.jsonl", fail="stage1"))
    with pytest.raises(SystemExit, match="stage1 failed with exit code 3"):
        plan_module.run_plan(plan_module.PLAN, tmp_path, {run.name: [] for run in plan_module.PLAN}, slots=2,
                             threads=1, poll_s=0.02)
    assert not (tmp_path / "stage2_sfvr").exists()  # nothing that reads stage 1 was started


def test_the_shipped_teacher_is_adopted_once_with_its_checksum_and_a_non_teacher_is_refused(tmp_path: Path) -> None:
    import hashlib

    runs = tmp_path / "runs"
    assert plan_module.adopt_teacher(runs)
    model = runs / "teacher" / "model"
    shipped = plan_module.SHIPPED_TEACHER
    assert (model / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()
    record = json.loads((runs / "teacher" / plan_module.ADOPTED).read_text())
    assert record["sha256"] == hashlib.sha256((shipped / "model.safetensors").read_bytes()).hexdigest()
    assert record["steps"] == 3000 and record["photos"] == plan_module.TEACHER_PHOTO_SET
    assert plan_module.finished(plan_module.PLAN[0], runs)
    assert not plan_module.adopt_teacher(runs)  # a teacher is there already: left as it is
    with pytest.raises(SystemExit, match="not a teacher checkpoint"):
        plan_module.adopt_teacher(tmp_path / "other", source=Path("assets/default/sftok").resolve())


def test_the_runs_folder_remembers_each_photo_sets_build_and_refuses_another(tmp_path: Path) -> None:
    def manifest(train_crops: int) -> dict:
        return {key: 0 for key in plan_module.STAMPED} | {"train_crops": train_crops}

    builds = {plan_module.PHOTO_SET: manifest(40_000), plan_module.TEACHER_PHOTO_SET: manifest(40_000)}
    runs = tmp_path / "runs"
    plan_module.stamp_runs(runs, builds)
    plan_module.stamp_runs(runs, builds)  # the same builds again: accepted
    assert json.loads((runs / plan_module.RUNS_STAMP).read_text()) == builds
    with pytest.raises(SystemExit, match=f"{plan_module.PHOTO_SET}: train_crops differ"):
        plan_module.stamp_runs(runs, {**builds, plan_module.PHOTO_SET: manifest(1_000)})
    older = tmp_path / "older"
    (older / "stage1").mkdir(parents=True)  # runs made before the folder kept a stamp
    with pytest.raises(SystemExit, match="no dataset.json: made from an older default dataset"):
        plan_module.stamp_runs(older, builds)
