"""Evaluation jobs from the app: request checks, commands, the paper-shaped table and its exports, reported rows kept
apart, one vocabulary with training runs' eval rows, and a real job through the JobManager (cancel + resume)."""
from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from analysis.fid import INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL
from tests.analysis.conftest import photo_crops
from tests.analysis.random_inception import random_inception  # noqa: F401 (fixture)
from tests.app_fixtures import save_tiny_model
from trainers.sink import JsonlSink
from workbench.io.workspace import Workspace
from workbench.runs.eval_job import metric_key, record_metrics
from workbench.runs.executors.slurm_options import SlurmOptions
from workbench.runs.manager import JobManager
from workbench.runs.records import RunRecord, RunStatus
from workbench.runs.store import Store
from workbench.services.eval_tables import (MEASURED_COLUMNS, latex_table, measured_table, reported_table,
                                            rfid_figure, write_csv)
from workbench.services.evaluations import (EVAL_KIND, EvalRefused, EvalRequest, checkpoint_evaluations,
                                            eval_command, find_inception, parse_steps, plan_evaluation,
                                            submit_evaluation)
from workbench.services.model_registry import DEFAULT_CHOICE, ModelRegistry
from workbench.services.reported_results import REPORTED

NUM_PHOTOS = 4


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> dict:
    """A workspace with 4 photo crops (an image-folder dataset) and the tiny model as the embedded default."""
    root = tmp_path_factory.mktemp("evalspace")
    model = save_tiny_model(root / "models" / "tiny")
    folder = root / "ws" / "datasets" / "photos"
    folder.mkdir(parents=True)
    for i, crop in enumerate(photo_crops(NUM_PHOTOS, seed=5)):
        Image.fromarray(crop).save(folder / f"{i}.png")
    workspace = Workspace.create(root / "ws")
    registry = ModelRegistry(workspace, model, None, default_generator=None)
    store = Store(workspace.root)
    yield {"root": root, "model": model, "workspace": workspace, "registry": registry, "store": store}
    store.close()


def request(weights: Path, **kw) -> EvalRequest:
    fields = dict(models=(DEFAULT_CHOICE,), dataset="datasets/photos", steps="1,2", num_images=NUM_PHOTOS,
                  batch_size=2, lpips=False, inception=str(weights))
    return EvalRequest(**{**fields, **kw})


@pytest.fixture(scope="module")
def fake_inception(space) -> Path:
    """A file under the Inception's name: the checks look for the file; only the job loads it."""
    path = space["workspace"].root / "weights" / INCEPTION_WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not read by the checks")
    return path


# -- checks before a job starts ----------------------------------------------------------------------
def test_steps_parse_and_refuse():
    assert parse_steps(" 1, 2,4 ,8") == (1, 2, 4, 8)
    for bad in ("", "0,1", "1,x", "2,2"):
        with pytest.raises(EvalRefused, match="steps"):
            parse_steps(bad)


def test_plan_names_the_model_and_its_command(space, fake_inception):
    plan = plan_evaluation(space["registry"], space["store"], request(fake_inception))
    [model] = plan.models
    assert (model.label, model.path, model.image_size, model.family) == ("embedded default", space["model"].resolve(),
                                                                         64, "sftok")
    assert plan.steps == (1, 2) and plan.inception == fake_inception and plan.teacher is None
    run_dir = Path("/ws/runs/r1")
    command = eval_command(plan, model, run_dir, python="py")
    assert command[:7] == ["py", "-m", "workbench.runs.eval_job", "--run-dir", str(run_dir), "--checkpoint-step", "0"]
    args = command[7:]
    assert args[args.index("--model") + 1] == str(space["model"].resolve())
    assert args[args.index("--steps") + 1] == "1,2" and args[args.index("--num-images") + 1] == "4"
    assert args[args.index("--inception-weights") + 1] == str(fake_inception)
    assert "--no-lpips" in args and "--teacher" not in args and "--out" not in args
    # N local CPU processes go through torchrun; under Slurm the executor adds its own torchrun
    plan2 = plan_evaluation(space["registry"], space["store"], request(fake_inception, processes=2))
    two = eval_command(plan2, model, run_dir, python="py")
    assert two[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert two[5:8] == ["-m", "workbench.runs.eval_job", "--run-dir"]
    assert eval_command(plan2, model, run_dir, SlurmOptions(partition="gpu"), python="py")[:3] == [
        "py", "-m", "workbench.runs.eval_job"]


@pytest.mark.parametrize("change, message", [
    ({"models": ()}, "pick at least one model"),
    ({"models": ("models/none",)}, "models/none"),
    ({"dataset": None}, "dataset: none chosen"),
    ({"dataset": "datasets/absent"}, "dataset"),
    ({"num_images": 5}, "5 asked, the val split of datasets/photos holds 4"),
    ({"num_images": 1}, "images: expected a whole number >= 2"),
    ({"steps": "0"}, "steps"),
    ({"processes": 2, "device": "cuda:0"}, "one process per listed device"),
    ({"device": "gpu"}, "device must be"),
    ({"inception": "/etc/passwd"}, "outside the workspace"),
])
def test_invalid_requests_are_refused_before_a_job(space, fake_inception, change, message):
    with pytest.raises(EvalRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_evaluation(space["registry"], space["store"], request(fake_inception, **change))
    assert space["store"].list_runs() == []


def test_a_missing_inception_file_is_named_with_where_it_goes_and_the_fetch_command(space):
    workspace = space["workspace"]
    with pytest.raises(EvalRefused) as err:
        find_inception(workspace, "weights/elsewhere.pth")
    text = str(err.value)
    target = workspace.root / "weights" / INCEPTION_WEIGHTS_FILE
    assert INCEPTION_WEIGHTS_FILE in text and str(workspace.root / "weights") in text
    assert f"curl -L --create-dirs -o {target} {INCEPTION_WEIGHTS_URL}" in text and "nothing is downloaded" in text


def test_submit_job_refuses_a_training_stage(space):
    with JobManager(space["store"], start=False) as jobs:
        with pytest.raises(ValueError, match="training stage"):
            jobs.submit_job("2", lambda run_dir: ["true"], {})


# -- rows, table, exports ------------------------------------------------------------------------------
RECORD = {"model": "m", "steps": 8, "temperature": None, "num_images": 50, "rfid": 3.25, "is": 11.5, "psnr": 21.0,
          "ssim": 0.61, "lpips": None, "codebook_usage": 0.25, "codebook_entropy_bits": 7.5}


def test_a_record_becomes_the_training_vocabulary():
    assert record_metrics(RECORD) == {"eval/rfid@8": 3.25, "eval/is@8": 11.5, "eval/psnr@8": 21.0,
                                      "eval/ssim@8": 0.61, "eval/codebook_used": 0.25,
                                      "eval/codebook_entropy_bits": 7.5, "eval/num_images": 50.0}
    assert metric_key("rfid", 4, 1.0) == "eval/rfid@4@t1" and metric_key("codebook_used") == "eval/codebook_used"


def fake_eval_run(store: Store, label: str, rows: dict[int, dict], step: int = 0, model: str = "/m") -> RunRecord:
    """An eval run whose run directory holds result rows as the job writes them."""
    run_id = f"eval-{label}-{len(store.list_runs())}"
    run = store.create_run(RunRecord(id=run_id, run_dir=str(store.run_dir_for(run_id)), name=f"eval {label}",
                                     stage=EVAL_KIND, status=RunStatus.DONE,
                                     config={"evaluate": {"label": label, "model": model, "launch": "L"}}))
    sink = JsonlSink(run.run_dir)
    for steps, values in rows.items():
        sink.log(step, record_metrics({**RECORD, **values, "steps": steps}))
    sink.close()
    store.ingest([run_id])
    return run


def test_table_is_model_by_steps_and_the_reported_numbers_stay_apart(tmp_path):
    with Store(tmp_path) as store:
        b = fake_eval_run(store, "b_model", {8: {"rfid": 2.0}, 1: {"rfid": 9.0, "lpips": 0.2}})
        a = fake_eval_run(store, "a", {4: {"rfid": 5.123}})
        table = measured_table(store, [b, a])
    assert list(table.columns) == MEASURED_COLUMNS
    assert table[["model", "steps", "rFID"]].values.tolist() == [["a", 4, 5.12], ["b_model", 1, 9.0],
                                                                 ["b_model", 8, 2.0]]
    assert table["usage %"].tolist() == [25.0] * 3 and table["images"].tolist() == [50] * 3
    assert table["LPIPS"].isna().tolist() == [True, False, True] and table.loc[1, "LPIPS"] == 0.2
    reported = reported_table()
    assert reported[["model", "rFID"]].dropna().values.tolist() == [["SFTok-B", 1.44], ["SFTok-L", 1.21],
                                                                    ["TiTok-B-64", 1.70]]
    assert reported["gFID"].dropna().tolist() == [2.29] and len(reported) == len(REPORTED)
    assert not set(reported["rFID"].dropna()) & set(table["rFID"])
    figure = rfid_figure(table)
    assert [(t.name, list(t.x), list(t.y)) for t in figure.data] == [("a", [4], [5.12]), ("b_model", [1, 8], [9.0, 2.0])]


def test_csv_and_latex_hold_measured_rows_then_the_labelled_reported_block(tmp_path):
    with Store(tmp_path / "s") as store:
        table = measured_table(store, [fake_eval_run(store, "ours_x", {8: {}})])
    rows = list(csv.DictReader(open(write_csv(table, reported_table(), tmp_path / "t.csv"), encoding="utf-8")))
    assert [(r["kind"], r["model"], r["rFID"]) for r in rows] == [
        ("measured", "ours_x", "3.25"), ("reported (reported, ImageNet 256, 50k)", "SFTok-B", "1.44"),
        ("reported (reported, ImageNet 256, 50k)", "SFTok-L", "1.21"),
        ("reported (reported, ImageNet 256, 50k)", "TiTok-B-64", "1.7"),
        ("reported (reported, ImageNet 256, 50k)", "SFTok (generation)", "")]
    assert rows[-1]["gFID"] == "2.29" and rows[0]["source"] == "this workspace" and "arXiv" in rows[1]["source"]
    latex = latex_table(table, reported_table())
    lines = latex.splitlines()
    assert lines[2] == r"model & steps & images & rFID & gFID & IS & PSNR & SSIM & LPIPS & usage \% \\"
    assert lines[4] == r"ours\_x & 8 & 50 & 3.25 & -- & 11.50 & 21.00 & 0.610 & -- & 25.0 \\"
    block = next(i for i, line in enumerate(lines) if "Reported (reported, ImageNet 256, 50k" in line)
    assert block > 4 and lines[block - 1] == r"\midrule"
    assert r"SFTok-B & 8 & 50{,}000 & 1.44 & -- & -- & -- & -- & -- & -- \\" in lines[block + 1:]
    assert lines[-1] == r"\end{tabular}"


def test_a_checkpoint_s_rows_from_training_and_from_an_evaluation_job_are_one_table(tmp_path):
    with Store(tmp_path) as store:
        train_dir = store.run_dir_for("train-1")
        store.create_run(RunRecord(id="train-1", run_dir=str(train_dir), stage="3", status=RunStatus.DONE))
        save_tiny_model(train_dir / "model")
        meta = json.loads((train_dir / "model" / "config.json").read_text())
        (train_dir / "model" / "config.json").write_text(json.dumps({**meta, "steps": 100}))
        sink = JsonlSink(train_dir)
        sink.log(50, {"eval/psnr@8": 10.0, "train/loss": 1.0})
        sink.log(100, {"eval/psnr@8": 12.0, "eval/codebook_used": 0.5, "train/loss": 0.5})
        sink.close()
        store.ingest(["train-1"])
        job = fake_eval_run(store, "run model", {8: {"psnr": 12.25}}, step=100, model=str(train_dir / "model"))
        rows = checkpoint_evaluations(store, train_dir / "model")
    by_owner = {(run, key): (step, value) for run, _, step, key, value in rows}
    assert by_owner[("train-1", "eval/psnr@8")] == (100, 12.0) and by_owner[(job.id, "eval/psnr@8")] == (100, 12.25)
    assert {k for (r, k) in by_owner if r == "train-1"} == {"eval/psnr@8", "eval/codebook_used"}
    assert {kind for _, kind, *_ in rows} == {"3", EVAL_KIND}


# -- a real job ---------------------------------------------------------------------------------------
def wait_for_event(store: Store, jobs: JobManager, run_id: str, text: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs.tick()
        store.ingest([run_id])
        if any(text in e.message for e in store.events(run_id)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no event {text!r} from {run_id}: {store.events(run_id)}")


def test_a_job_runs_cancels_resumes_and_ends_with_the_uninterrupted_numbers(space, random_inception):  # noqa: F811
    """Two runs at once: one uninterrupted; one cancelled after its first batch (SIGTERM once its handler is set)
    then resumed. Both end with the same results.json numbers and the same store rows."""
    store = space["store"]
    weights = space["workspace"].root / "inception" / INCEPTION_WEIGHTS_FILE  # the app reads inside the workspace
    weights.parent.mkdir(exist_ok=True)
    shutil.copyfile(random_inception, weights)
    with JobManager(store, device_limits={"cpu": 2}, poll_interval=0.2) as jobs:
        plan = plan_evaluation(space["registry"], store, request(weights, steps="2", batch_size=1, num_images=2))
        [whole] = submit_evaluation(jobs, plan)
        [stopped] = submit_evaluation(jobs, plan)
        assert whole.command[:3] == [sys.executable, "-m", "workbench.runs.eval_job"] and whole.stage == EVAL_KIND
        wait_for_event(store, jobs, stopped.id, "starting evaluation")
        jobs.cancel(stopped.id)
        stopped = jobs.wait(stopped.id, 180)
        assert (stopped.status, stopped.exit_code) == (RunStatus.STOPPED, 130)
        assert (Path(stopped.run_dir) / "eval" / "partial" / "rank0-of-1.npz").is_file()
        assert any("stopped: cancelled after 1 images" in e.message for e in store.events(stopped.id))
        resumed = jobs.resume(stopped.id)
        assert resumed.command[-1] == "--resume"
        resumed, whole = jobs.wait(stopped.id, 180), jobs.wait(whole.id, 180)
        assert (resumed.status, whole.status) == (RunStatus.DONE, RunStatus.DONE), (resumed.error, whole.error)
    expected = json.loads((Path(whole.run_dir) / "eval" / "results.json").read_text())["records"]
    got = json.loads((Path(resumed.run_dir) / "eval" / "results.json").read_text())["records"]
    for e, g in zip(expected, got, strict=True):
        for key in ("rfid", "is", "psnr", "ssim", "codebook_usage", "num_images"):
            assert g[key] == pytest.approx(e[key], rel=1e-6), key
    table = measured_table(store, [store.get_run(whole.id), store.get_run(resumed.id)])
    assert table["steps"].tolist() == [2, 2] and table["images"].tolist() == [2, 2]
    assert table.loc[0, "rFID"] == pytest.approx(round(expected[0]["rfid"], 2))
    assert table.loc[0, ["rFID", "IS", "PSNR", "SSIM"]].tolist() == table.loc[1, ["rFID", "IS", "PSNR", "SSIM"]].tolist()
    progress = store.progress(resumed.id)
    assert progress.fraction == 1.0
    messages = [e.message for e in store.events(resumed.id)]
    assert messages[0].startswith("starting") and any(m.startswith("resuming") for m in messages)
    assert messages[-1].startswith("finished: 2 images")
