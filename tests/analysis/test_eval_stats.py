"""Known answers of the summable evaluation statistics, the rank split, reference files and checkpoints."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.adm_reference import ADM_PROTOCOL, ReferenceMismatch, ReferenceStats, load_reference, save_reference
from analysis.eval_checkpoint import ResumeMismatch, load_checkpoint, save_checkpoint
from analysis.eval_stats import InceptionScoreStats, MeanStats, joint_state, load_joint_state
from analysis.fid import FeatureStats, fid_from_stats
from analysis.rank_data import iter_rank_batches, rank_share


def test_inception_score_known_answers() -> None:
    uniform = InceptionScoreStats(10)
    uniform.update_probs(np.full((6, 10), 0.1))
    assert uniform.score() == pytest.approx(1.0, abs=1e-12)
    for k in (1, 3, 7):
        onehot = InceptionScoreStats(10)
        onehot.update_probs(np.eye(10)[:k])  # k images, k distinct classes, fully confident
        assert onehot.score() == pytest.approx(k, rel=1e-12)
    same = InceptionScoreStats(10)
    same.update_probs(np.tile(np.eye(10)[2], (5, 1)))  # confident, but always the same class
    assert same.score() == pytest.approx(1.0, abs=1e-12)


def test_inception_score_is_torch_fidelity_one_split_and_adds_over_parts() -> None:
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric

    logits = torch.randn(23, 17, generator=torch.Generator().manual_seed(0)) * 3
    whole = InceptionScoreStats(17)
    whole.update_logits(logits)
    ref = isc_features_to_metric(logits, splits=1, shuffle=False)[KEY_METRIC_ISC_MEAN]
    assert whole.score() == pytest.approx(ref, rel=1e-12)
    parts = [InceptionScoreStats(17) for _ in range(3)]
    for part, chunk in zip(parts, (logits[:4], logits[4:15], logits[15:])):
        part.update_logits(chunk)
    merged = InceptionScoreStats(17)
    merged.load_state({k: sum(p.state()[k] for p in parts) for k in parts[0].state()})
    assert merged.score() == pytest.approx(ref, rel=1e-12)


def test_feature_statistics_add_over_parts_and_fid_of_a_set_with_itself_is_zero() -> None:
    feats = np.random.default_rng(3).normal(size=(40, 5)) * [1, 2, 3, 4, 5]
    whole, a, b = FeatureStats(5), FeatureStats(5), FeatureStats(5)
    whole.update(feats)
    a.update(feats[:13])
    b.update(feats[13:])
    merged = FeatureStats(5)
    merged.load_state({k: a.state()[k] + b.state()[k] for k in a.state()})
    np.testing.assert_allclose(merged.covariance, np.cov(feats, rowvar=False), rtol=1e-12)
    assert merged.count == 40
    assert fid_from_stats(whole, merged) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="dimension 5"):
        FeatureStats(5).load_state(FeatureStats(4).state())


def test_mean_statistics() -> None:
    values = np.array([1.0, 2.0, 4.0, 7.0])
    stats = MeanStats()
    stats.update(values[:1])
    stats.update(torch.tensor(values[1:]))
    assert stats.mean == pytest.approx(3.5)
    assert stats.sem == pytest.approx(values.std(ddof=1) / 2)
    assert MeanStats().mean is None


def test_joint_state_names_each_part_and_reads_back() -> None:
    mean, score = MeanStats(), InceptionScoreStats(3)
    mean.update(np.array([1.0, 3.0]))
    score.update_probs(np.eye(3)[:2])
    state = joint_state({"psnr": mean, "real/is": score})
    assert sorted(state) == ["psnr/count", "psnr/total", "psnr/total_sq",
                             "real/is/class_sum", "real/is/count", "real/is/plogp_sum"]
    assert float(state["psnr/total_sq"]) == 10.0
    back_mean, back_score = MeanStats(), InceptionScoreStats(3)
    load_joint_state({"psnr": back_mean, "real/is": back_score}, state)
    assert (back_mean.mean, back_mean.count) == (2.0, 2)
    assert back_score.score() == pytest.approx(2.0, rel=1e-12)  # two confident, distinct classes


@pytest.fixture
def seven_images(tmp_path: Path) -> Path:
    """Seven distinguishable 8x8 images (pixel value 10 x index) in a folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_every_image_counted_once_whatever_the_world(seven_images: Path, world: int) -> None:
    seen = []
    for rank in range(world):
        got = [i for _, indices in iter_rank_batches(seven_images, 8, 2, None, rank, world) for i in indices]
        assert len(got) == rank_share(7, rank, world)
        seen += got
    assert sorted(seen) == list(range(7))
    limited = [i for r in range(world) for _, ix in iter_rank_batches(seven_images, 8, 3, 5, r, world) for i in ix]
    assert sorted(limited) == list(range(5))


def test_rank_batches_skip_resumes_at_the_same_images(seven_images: Path) -> None:
    full = list(iter_rank_batches(seven_images, 8, 1, None, 0, 2))
    resumed = list(iter_rank_batches(seven_images, 8, 1, None, 0, 2, skip=2))
    assert [ix for _, ix in resumed] == [ix for _, ix in full[2:]]
    torch.testing.assert_close(resumed[0][0].images, full[2][0].images)
    assert resumed[0][0].images.mean().item() == pytest.approx(10 * full[2][1][0] / 255, abs=1e-6)


def test_reference_round_trip_ours_and_adm(tmp_path: Path) -> None:
    feats = FeatureStats(3)
    feats.update(np.random.default_rng(0).normal(size=(9, 3)))
    ours = ReferenceStats.from_features(feats, "protocol A", 64, "test")
    images = np.random.default_rng(1).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    loaded = load_reference(save_reference(tmp_path / "ref.npz", ours, images))
    np.testing.assert_array_equal(loaded.mu, ours.mu)
    np.testing.assert_array_equal(loaded.sigma, ours.sigma)
    assert (loaded.num_images, loaded.protocol, loaded.image_size) == (9, "protocol A", 64)
    with np.load(tmp_path / "ref.npz") as data:  # the ADM evaluator's keys
        np.testing.assert_array_equal(data["arr_0"], images)
    loaded.check_compatible("protocol A", 64)
    with pytest.raises(ReferenceMismatch, match="image size 64, this evaluation uses 256"):
        loaded.check_compatible("protocol A", 256)
    with pytest.raises(ReferenceMismatch, match="reference: protocol A\n  this run:  protocol B"):
        loaded.check_compatible("protocol B", 64)
    # An ADM batch: mu / sigma / arr_0 only; its size and count come from arr_0's header.
    np.savez(tmp_path / "VIRTUAL_test.npz", arr_0=images[:5, :32, :32], mu=ours.mu, sigma=ours.sigma)
    adm = load_reference(tmp_path / "VIRTUAL_test.npz")
    assert (adm.protocol, adm.num_images, adm.image_size) == (ADM_PROTOCOL, 5, 32)
    np.testing.assert_array_equal(adm.sigma, ours.sigma)
    adm.check_compatible("any protocol of ours", 32)
    with pytest.raises(ReferenceMismatch, match="image size 32"):
        adm.check_compatible("any protocol of ours", 256)
    np.savez(tmp_path / "bad.npz", mean=ours.mu)
    with pytest.raises(ValueError, match="needs arrays 'mu' and 'sigma'"):
        load_reference(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(io.BytesIO(b"not a zip").getvalue())
    with pytest.raises(ValueError, match="not a readable"):
        load_reference(tmp_path / "junk.npz")


def test_checkpoint_round_trip_and_refusal(tmp_path: Path) -> None:
    path = tmp_path / "partial" / "rank0-of-2.npz"
    state = {"s0/fid/sum": np.arange(3.0), "m0/usage": np.ones((2, 4), np.int64)}
    settings = {"models": ["a"], "steps": [1, 2], "world_size": 2}
    save_checkpoint(path, state, 6, settings)
    loaded, position = load_checkpoint(path, settings)
    assert position == 6 and set(loaded) == set(state)
    np.testing.assert_array_equal(loaded["m0/usage"], state["m0/usage"])
    assert not list(path.parent.glob(".*tmp*"))
    with pytest.raises(ResumeMismatch, match=r"steps = \[1, 2\], this run has \[1, 4\]"):
        load_checkpoint(path, {**settings, "steps": [1, 4]})
