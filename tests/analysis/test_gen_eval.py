"""``python -m analysis gen-eval`` with a tiny generator, a tiny tokenizer and a random-init Inception: class
balance and per-sample seeding (same images for any batch size and for 2 ranks under real torchrun), improved
precision/recall known answers, gFID of a set against a reference made of that set ~0, a resumed run's sums."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.adm_reference import ReferenceStats, save_reference
from analysis.cli import main
from analysis.eval_run import EvaluationCancelled, protocol_of
from analysis.fid import FeatureStats, inception_network, to_uint8
from analysis.gen_eval import GenEvalConfig, generate_samples, run_generator_evaluation
from analysis.precision_recall import knn_radii, precision_recall
from analysis.seeding import derived_generator
from core import GENERATOR_PRESETS, MaskGITGenerator, save_pretrained
from core.tokenizer import as_tokenizer

from .conftest import photo_crops
from .random_inception import random_inception  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NUM_IMAGES, STEPS, GUIDANCE, DECODE_STEPS = 6, 3, 2.0, 2
COMPARED = ("gfid", "is", "is_adm_splits", "precision", "recall", "num_images")


# -- precision / recall ----------------------------------------------------------------------------
def test_precision_recall_known_answers() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(20, 8))
    same = precision_recall(points, points.copy())
    assert (same.precision, same.recall, same.k) == (1.0, 1.0, 3)
    far = precision_recall(points, points + 1000.0)
    assert (far.precision, far.recall) == (0.0, 0.0)
    # 1-D by hand, k = 1. Real {0, 1, 3}: squared radii 1, 1, 4. Fake {0.5, 0.7, 3.2, 10}: squared radii
    # 0.04, 0.04, 6.25 (3.2 -> 0.7), 46.24 (10 -> 3.2). Fake inside real balls: 0.5, 0.7 (0.25, 0.49 <= 1),
    # 3.2 (0.04 <= 4); 10 is 49 from 3 > 4 -> precision 3/4. Real inside fake balls: 1 (4.84 from 3.2 <= 6.25)
    # and 3 (0.04); 0 is 10.24 from 3.2, 100 from 10 (> 46.24), 0.25 from 0.5 (> 0.04) -> recall 2/3.
    real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[0.5], [0.7], [3.2], [10.0]])
    assert knn_radii(fake, k=1).tolist() == pytest.approx([0.04, 0.04, 6.25, 46.24])
    hand = precision_recall(real, fake, k=1)
    assert (hand.precision, hand.recall) == (pytest.approx(3 / 4), pytest.approx(2 / 3))
    # blocks smaller than the sets give the same answer as one block
    a, b = rng.normal(size=(37, 5)), rng.normal(size=(29, 5)) + 0.5
    assert precision_recall(a, b, block=7) == precision_recall(a, b, block=4096)
    assert 0 < precision_recall(a, b).precision < 1
    with pytest.raises(ValueError, match="more than k = 3 points"):
        precision_recall(points[:3], points)


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model) -> dict[str, object]:
    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(2)
    generator = MaskGITGenerator(GENERATOR_PRESETS["tiny"]).eval()
    save_pretrained(generator, root / "generator")
    save_pretrained(tiny_model, root / "tokenizer")
    return {"root": root, "generator": generator, "tokenizer": as_tokenizer(tiny_model)}


def samples(models, indices: list[int], seed: int = 0) -> torch.Tensor:
    return generate_samples(models["generator"], models["tokenizer"], indices, STEPS, GUIDANCE, seed,
                            decode_steps=DECODE_STEPS)


def adm_batch(path: Path, images: torch.Tensor, weights: Path) -> Path:
    """An ADM-style reference (arr_0 uint8 NHWC, mu, sigma, no protocol) of ``images`` under our Inception."""
    uint8 = to_uint8(images)
    stats = FeatureStats(2048)
    stats.update(inception_network(weights, ["2048"])(uint8)[0])
    np.savez(path, arr_0=uint8.permute(0, 2, 3, 1).numpy(), mu=stats.mean, sigma=stats.covariance)
    return path


def cli_args(models, reference: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return ["gen-eval", "--generator", str(models["root"] / "generator"), "--tokenizer", str(models["root"] / "tokenizer"),
            "--reference", str(reference), "--num-images", str(NUM_IMAGES), "--steps", str(STEPS), "--guidance",
            str(GUIDANCE), "--decode-steps", str(DECODE_STEPS), "--batch-size", "4", "--inception-weights", str(weights),
            "--device", "cpu", "--out", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def photo_reference(models, random_inception) -> Path:  # noqa: F811
    crops = torch.from_numpy(photo_crops(8, size=64, seed=5)).permute(0, 3, 1, 2).float() / 255.0
    return adm_batch(models["root"] / "photos.npz", crops, random_inception)


@pytest.fixture(scope="module")
def baseline(models, photo_reference, random_inception) -> list[dict]:  # noqa: F811
    """One uninterrupted one-process run through the command line, batches of 4 (4 + 2)."""
    out = models["root"] / "one"
    assert main(cli_args(models, photo_reference, random_inception, out)) == 0
    return json.loads((out / "results.json").read_text())["records"]


def assert_same(records: list[dict], expected: list[dict], rel: float) -> None:
    assert [(r["steps"], r["guidance"]) for r in records] == [(e["steps"], e["guidance"]) for e in expected]
    for r, e in zip(records, expected):
        for key in COMPARED:
            assert r[key] == pytest.approx(e[key], rel=rel, abs=1e-9), key


# -- sampling --------------------------------------------------------------------------------------
def test_samples_are_class_balanced_and_seeded_per_image(models) -> None:
    images = samples(models, list(range(NUM_IMAGES)))
    one_by_one = torch.cat([samples(models, [i]) for i in range(NUM_IMAGES)])
    ranks = torch.cat([samples(models, [0, 2, 4]), samples(models, [1, 3, 5])])[[0, 3, 1, 4, 2, 5]]
    # The same draws; only float rounding of batched matmuls differs (no token flips at these sizes).
    assert torch.allclose(images, one_by_one, atol=1e-4) and torch.allclose(images, ranks, atol=1e-4)
    # distinct seeds draw distinct tokens (the random-init tokenizer renders them almost alike), and so does the base seed
    ids, _ = models["generator"].generate(torch.tensor([0, 0, 0]), STEPS, GUIDANCE, 1.0, [
        derived_generator("cpu", 0, 0), derived_generator("cpu", 0, 16), derived_generator("cpu", 1, 0)])
    assert (ids[0] != ids[1]).float().mean() > 0.5 and (ids[0] != ids[2]).float().mean() > 0.5
    # sample 17 is class 17 mod 16 = 1, drawn from the generator seeded by (0, 17) for sampling and decoding
    rng = derived_generator("cpu", 0, 17)
    ids, _ = models["generator"].generate(torch.tensor([1]), STEPS, GUIDANCE, 1.0, rng)
    by_hand = models["tokenizer"].decode(ids, DECODE_STEPS, None, rng)
    assert models["generator"].config.num_classes == 16
    assert torch.allclose(samples(models, [17]), by_hand, atol=1e-6)


# -- the evaluation --------------------------------------------------------------------------------
def test_records_against_an_adm_batch(baseline, models, photo_reference, capsys) -> None:
    (r,) = baseline
    assert (r["steps"], r["guidance"], r["decode_steps"], r["num_images"], r["world_size"]) == (STEPS, GUIDANCE, 2, 6, 1)
    assert r["images_per_class"] == [1] * 6 and r["num_classes"] == 16
    assert r["notes"] == ["6 images over 16 classes: classes 0..5 have one image more than the others"]
    assert r["gfid"] > 0 and r["is"] >= 1 and r["is_adm_splits"] == pytest.approx(r["is"])  # 6 < 5000: one split
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["pr_reference_images"] == 8
    # the reference's mu/sigma are our Inception's statistics of its arr_0, so both distances agree
    assert r["gfid_our_reference_stats"] == pytest.approx(r["gfid"], rel=1e-6)
    assert r["reference_num_images"] == 8 and r["reference_protocol"].startswith("ADM evaluator")
    cache = Path(r["reference_features"])
    assert cache.parent == photo_reference.parent and cache.name.startswith("photos.features-")
    assert r["protocol"].startswith("sample i: class i mod C")


def test_two_ranks_under_torchrun_equal_one_process(models, baseline, photo_reference, random_inception,  # noqa: F811
                                                    tmp_path) -> None:
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "analysis",
                           *cli_args(models, photo_reference, random_inception, out, "--no-refit-reference")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((out / "results.json").read_text())["records"]
    assert records[0]["world_size"] == 2
    assert_same(records, baseline, rel=1e-6)  # 6 samples split 3 + 3, the same images as one process
    assert not list((out / "partial").glob("*.npz"))


def test_resumed_run_against_a_reference_of_itself(models, baseline, random_inception, tmp_path) -> None:  # noqa: F811
    """A run cancelled after one batch and resumed: against a reference made of the same 6 images gFID is ~0 and
    precision = recall = 1 (every sample's features, the resumed ones included, found again), and the IS sums
    (reference-free) equal the uninterrupted baseline's."""
    reference = adm_batch(tmp_path / "self.npz", samples(models, list(range(NUM_IMAGES))), random_inception)
    out = tmp_path / "resumed"
    config = GenEvalConfig(str(models["root"] / "generator"), str(models["root"] / "tokenizer"), str(reference),
                           str(out), NUM_IMAGES, (STEPS,), (GUIDANCE,), decode_steps=DECODE_STEPS, batch_size=4,
                           inception_weights=str(random_inception), refit_reference=False)
    with pytest.raises(EvaluationCancelled, match="after 4 samples"):
        run_generator_evaluation(config, should_cancel=lambda: True)
    args = cli_args(models, reference, random_inception, out, "--no-refit-reference")
    assert main(args) == 2  # a partial run is not overwritten silently
    assert main([*args, "--resume", "--steps", "2"]) == 2  # nor resumed with other settings
    assert main([*args, "--resume"]) == 0
    (r,) = json.loads((out / "results.json").read_text())["records"]
    assert abs(r["gfid"]) < 1e-3 and (r["precision"], r["recall"]) == (1.0, 1.0)
    assert r["gfid_our_reference_stats"] is None and r["num_images"] == NUM_IMAGES
    assert (r["is"], r["is_adm_splits"]) == (pytest.approx(baseline[0]["is"], rel=1e-9),
                                            pytest.approx(baseline[0]["is_adm_splits"], rel=1e-9))
    assert not (out / "partial" / "rank0-of-1.npz").exists()


def test_bad_inputs_are_clear_errors(models, photo_reference, random_inception, tmp_path, capsys) -> None:  # noqa: F811
    assert main(cli_args(models, tmp_path / "missing.npz", random_inception, tmp_path / "a")) == 2
    assert "missing.npz does not exist" in capsys.readouterr().err
    feats = FeatureStats(2048)
    feats.update(np.random.default_rng(0).normal(size=(3, 2048)))
    other = save_reference(tmp_path / "ref256.npz", ReferenceStats.from_features(feats, protocol_of(256), 256, "t"))
    assert main(cli_args(models, other, random_inception, tmp_path / "b")) == 2
    assert "image size 256, this evaluation uses 64" in capsys.readouterr().err
    assert main(cli_args(models, photo_reference, random_inception, tmp_path / "c", "--guidance", "x")) == 2
    assert "--guidance: expected comma-separated numbers" in capsys.readouterr().err
