"""The embedded default dataset: deterministic bytes, a split held out by whole source photo, samples."""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers.data import DefaultDataset, build_default_dataset, export_samples, make_eval_loader
from trainers.data.default_dataset import crop_box, main
from trainers.data.photos import TRAIN_PHOTOS, VAL_PHOTOS, load_photo

SMALL = dict(image_size=32, train_crops=60, val_crops=12)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DefaultDataset:
    return build_default_dataset(tmp_path_factory.mktemp("default") / "data", seed=0, **SMALL)


def test_same_seed_gives_identical_bytes(built, tmp_path: Path) -> None:
    again = build_default_dataset(tmp_path / "again", seed=0, **SMALL)
    other = build_default_dataset(tmp_path / "other", seed=1, **SMALL)
    assert digest(Path(built.root)) == digest(Path(again.root))
    assert digest(Path(built.root))["train-000000.tar"] != digest(Path(other.root))["train-000000.tar"]
    assert sorted(digest(Path(built.root))) == ["dataset.json", "labels.json", "train-000000.tar", "val-000000.tar"]


def test_validation_photos_are_held_out_whole(built) -> None:
    assert built.class_names == list(TRAIN_PHOTOS + VAL_PHOTOS)
    assert set(built.train_class_ids).isdisjoint(built.val_class_ids)
    assert [built.class_names[i] for i in built.val_class_ids] == list(VAL_PHOTOS)
    train = [c for b in make_eval_loader(built.train_shards, 32, 64) for c in b["class_id"].tolist()]
    val_batches = list(make_eval_loader(built.val_shards, 32, 64))
    val = [c for b in val_batches for c in b["class_id"].tolist()]
    assert len(train) == 60 and len(val) == 12
    assert Counter(train) == {i: 4 for i in built.train_class_ids}  # 60 crops / 15 photos, balanced
    assert Counter(val) == {i: 4 for i in built.val_class_ids}
    images = val_batches[0]["image"]
    assert images.shape == (12, 3, 32, 32) and images.std(dim=(1, 2, 3)).min() > 0.01  # real content


def test_reuse_and_refusals(built, tmp_path: Path) -> None:
    shard = Path(built.train_shards[0])
    mtime = shard.stat().st_mtime_ns
    assert build_default_dataset(built.root, seed=0, **SMALL) == built
    assert shard.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert DefaultDataset.load(built.root) == built
    with pytest.raises(FileExistsError, match=r"other parameters: train_crops=60 \(asked 61\)"):
        build_default_dataset(built.root, seed=0, **{**SMALL, "train_crops": 61})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("someone else's file")
    with pytest.raises(FileExistsError, match="not empty"):
        build_default_dataset(tmp_path / "busy", **SMALL)
    assert not list(tmp_path.glob(".*partial*"))


def test_crop_boxes_stay_inside_and_span_scales() -> None:
    rng = np.random.default_rng(0)
    boxes = [crop_box(451, 300, 64, rng) for _ in range(500)]
    sides = [side for _, _, side in boxes]
    assert all(0 <= left and left + side <= 451 and 0 <= top and top + side <= 300 for left, top, side in boxes)
    assert min(sides) < 80 and max(sides) > 270 and all(64 <= s <= 300 for s in sides)


def test_export_samples_are_held_out_views(tmp_path: Path) -> None:
    paths = export_samples(tmp_path / "samples", n=4, size=48)
    assert [p.name for p in paths] == ["coffee.png", "flower.png", "camera.png", "coffee_zoom1.png"]
    coffee = load_photo("coffee")  # 600x400: the centred 400x400 square
    expected = np.array(coffee.crop((100, 0, 500, 400)).resize((48, 48), Image.Resampling.BICUBIC))
    assert np.array_equal(np.array(Image.open(paths[0])), expected)
    zoom = np.array(coffee.crop((150, 50, 450, 350)).resize((48, 48), Image.Resampling.BICUBIC))
    assert np.array_equal(np.array(Image.open(paths[3])), zoom)


def test_cli_builds_and_exports(tmp_path: Path, capsys) -> None:
    code = main([str(tmp_path / "cli"), "--image-size", "16", "--train-crops", "30", "--val-crops", "6",
                 "--samples", str(tmp_path / "samples")])
    assert code == 0
    out = capsys.readouterr().out
    assert "30 train crops in 1 shards, 6 val crops in 1 shards, 18 classes, 16px" in out
    assert len(list((tmp_path / "samples").glob("*.png"))) == 6
