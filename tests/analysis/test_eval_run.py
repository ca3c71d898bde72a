"""``python -m analysis eval`` end to end with a random-init Inception: rFID and IS equal torch-fidelity's own,
2 ranks under real torchrun equal 1 process, and a run killed with SIGKILL resumes to the same numbers."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from analysis.adm_reference import ReferenceMismatch, ReferenceStats, save_reference
from analysis.cli import main
from analysis.data import iter_image_batches
from analysis.eval_run import EvalConfig, EvaluationCancelled, run_evaluation
from analysis.fid import FeatureStats
from core import save_pretrained
from core.tokenizer import load_tokenizer

from .conftest import photo_crops
from .random_inception import random_inception  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
COMPARED = ("rfid", "is", "psnr", "ssim", "codebook_entropy_bits", "num_images")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """The tiny model and 3 photo crops in two uneven shards (2 + 1). Few images and one step count: on 2 CPU
    cores each random-Inception pass and each 2048-d Frechet distance (a general eigenproblem) cost seconds."""
    root = tmp_path_factory.mktemp("eval")
    save_pretrained(tiny_model, root / "model")
    crops = photo_crops(3, size=72, seed=3)
    for shard, part in ((0, crops[:2]), (1, crops[2:])):
        with wds.TarWriter(str(root / f"shard-{shard:06d}.tar")) as writer:
            for i, crop in enumerate(part):
                buf = io.BytesIO()
                Image.fromarray(crop).save(buf, format="PNG")
                writer.write({"__key__": f"{shard}-{i}", "png": buf.getvalue()})
    return {"root": root, "model": root / "model", "data": root / "shard-{000000..000001}.tar"}


def eval_args(workspace, weights: Path, out: Path) -> list[str]:
    return ["--model", str(workspace["model"]), "--data", str(workspace["data"]), "--steps", "2",
            "--temperatures", "0", "--batch-size", "1", "--inception-weights", str(weights), "--no-lpips",
            "--device", "cpu", "--out", str(out), "--no-progress"]


def config_of(workspace, weights: Path, out: Path, **kw) -> EvalConfig:
    fields = {"steps": (2,), "temperatures": (0.0,), "batch_size": 1, "inception_weights": str(weights),
              "lpips": False, **kw}
    return EvalConfig(models=(str(workspace["model"]),), data=(str(workspace["data"]),), out=str(out), **fields)


@pytest.fixture(scope="module")
def baseline(workspace, random_inception) -> list[dict]:  # noqa: F811
    """One uninterrupted, one-process run (progress reported after every image)."""
    seen = []
    result = run_evaluation(config_of(workspace, random_inception, workspace["root"] / "one"),
                            progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, None), (2, None), (3, None)]
    assert not (workspace["root"] / "one" / "partial" / "rank0-of-1.npz").exists()
    assert json.loads((workspace["root"] / "one" / "results.json").read_text())["records"] == json.loads(
        json.dumps(result.records))
    return result.records


def assert_same(records: list[dict], expected: list[dict], rel: float) -> None:
    assert [(r["steps"], r["temperature"]) for r in records] == [(e["steps"], e["temperature"]) for e in expected]
    for r, e in zip(records, expected):
        for key in COMPARED:
            assert r[key] == pytest.approx(e[key], rel=rel), (key, r["steps"])


def test_records_and_rfid_equal_torch_fidelity(workspace, baseline, random_inception) -> None:  # noqa: F811
    from torch_fidelity import calculate_metrics

    assert [(r["steps"], r["temperature"]) for r in baseline] == [(2, 0.0)]
    first = baseline[0]
    assert first["num_images"] == 3 and first["reference_num_images"] == 3 and first["image_size"] == 64
    assert "image size 64" in first["protocol"] and first["lpips"] is None and first["lpips_note"] == "disabled"
    assert 0 < first["codebook_usage"] <= 1 and first["codebook_entropy_bits"] > 0 and first["rfid"] > 0

    tokenizer = load_tokenizer(workspace["model"])
    reals = [b.images for b in iter_image_batches(str(workspace["data"]), 64, 1)]
    recons = [tokenizer.decode(tokenizer.encode(x), 2, 0.0) for x in reals]

    class Uint8Images(torch.utils.data.Dataset):
        def __init__(self, images: list[torch.Tensor]) -> None:
            self.images = [(x[0].clamp(0, 1) * 255).round().to(torch.uint8) for x in images]

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.images[i]

    theirs = calculate_metrics(input1=Uint8Images(recons), input2=Uint8Images(reals), fid=True, isc=True, isc_splits=1,
                               samples_shuffle=False, feature_extractor_weights_path=str(random_inception),
                               cuda=False, cache=False, verbose=False, batch_size=3)
    assert first["rfid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert first["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-5)


def test_two_ranks_under_torchrun_equal_one_process(workspace, baseline, random_inception, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "analysis",
                           "eval", *eval_args(workspace, random_inception, out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((out / "results.json").read_text())["records"]
    assert all(r["world_size"] == 2 for r in records)
    assert_same(records, baseline, rel=1e-6)  # 3 images split 2 + 1, each counted once
    assert not list((out / "partial").glob("*.npz"))


def test_killed_run_resumes_to_the_uninterrupted_numbers(workspace, baseline, random_inception, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "killed"
    ckpt = out / "partial" / "rank0-of-1.npz"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "analysis", "eval", *eval_args(workspace, random_inception, out),
                             "--checkpoint-every", "1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with np.load(ckpt) as data:
        position = json.loads(str(data["__meta__"]))["position"]
    assert 1 <= position < 3
    assert main(["eval", *eval_args(workspace, random_inception, out)]) == 2  # a partial run is not overwritten silently
    result = run_evaluation(config_of(workspace, random_inception, out, resume=True))
    # Part of the sums come from another process (the killed one); its float rounding can differ in the last
    # bits, which the rank-deficient 2048-d Frechet distance (3 images) amplifies to ~1e-7: the 2-rank tolerance.
    assert_same(result.records, baseline, rel=1e-6)
    assert not ckpt.exists()


def test_cancel_saves_and_a_mismatched_reference_is_refused(workspace, random_inception, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "cancelled"
    with pytest.raises(EvaluationCancelled, match="after 1 images"):
        run_evaluation(config_of(workspace, random_inception, out, num_images=2),
                       should_cancel=lambda: True)
    assert (out / "partial" / "rank0-of-1.npz").exists()
    feats = FeatureStats(2048)
    feats.update(np.random.default_rng(0).normal(size=(3, 2048)))
    ref = save_reference(tmp_path / "ref256.npz", ReferenceStats.from_features(feats, "p", 256, "t"))
    with pytest.raises(ReferenceMismatch, match="image size 256, this evaluation uses 64"):
        run_evaluation(config_of(workspace, random_inception, tmp_path / "ref", reference=str(ref)))
