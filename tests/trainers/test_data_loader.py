"""Train/eval loaders over real shards: order, determinism, transforms, corrupt data counted not fatal."""
from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from trainers.data import DataError, make_eval_loader, make_train_loader

SIZE = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, kit) -> dict:
    """3 shards x 7 samples; shard 1 holds non-square images larger than SIZE, the others SIZE squares."""
    root = tmp_path_factory.mktemp("loader")
    images, labels, keys = {}, {}, []
    for s in range(3):
        samples = []
        for i in range(7):
            key = f"{s}{i:07d}"
            image = kit.image(48, 40, seed=10 * s + i) if s == 1 else kit.image(SIZE, SIZE, seed=10 * s + i)
            images[key], labels[key] = image, (s * 7 + i) % 5
            keys.append(key)
            samples.append(kit.sample(key, image, labels[key]))
        kit.write(root / f"train-{s:06d}.tar", samples)
    return {"root": root, "pattern": str(root / "train-{000000..000002}.tar"), "images": images,
            "labels": labels, "keys": keys}


def official_eval_view(image) -> torch.Tensor:
    """The official eval transform written with torchvision's own pipeline (independent of ours)."""
    pipeline = v2.Compose([v2.PILToTensor(),
                           v2.Resize(SIZE, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                           v2.CenterCrop(SIZE), v2.ToDtype(torch.float32, scale=True)])
    return pipeline(image)


def pixels(image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def test_eval_loader_is_ordered_finite_with_partial_last_batch(dataset) -> None:
    loader = make_eval_loader(dataset["pattern"], SIZE, batch_size=5)
    batches = list(loader)
    assert [len(b["key"]) for b in batches] == [5, 5, 5, 5, 1]
    keys = [k for b in batches for k in b["key"]]
    assert keys == dataset["keys"]
    for batch in batches:
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, SIZE, SIZE)
        assert batch["class_id"].dtype == torch.long
        assert batch["class_id"].tolist() == [dataset["labels"][k] for k in batch["key"]]
        assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        for key, image in zip(batch["key"], batch["image"]):
            expected = official_eval_view(dataset["images"][key])
            # Stored SIZE squares come back exactly; resized ones match the torchvision pipeline to rounding.
            assert torch.allclose(image, expected, atol=1 / 255 + 1e-6), key
            if dataset["images"][key].size == (SIZE, SIZE):
                assert torch.equal(image, pixels(dataset["images"][key]))
    assert loader.stats.samples == 21 and loader.stats.total_skipped == 0
    assert [k for b in loader for k in b["key"]] == keys  # a second pass is the same pass


def test_train_loader_same_seed_same_batches(dataset) -> None:
    def take(seed: int, n: int = 6) -> list[dict]:
        iterator = iter(make_train_loader(dataset["pattern"], SIZE, batch_size=4, seed=seed, shuffle_buffer=8))
        return [next(iterator) for _ in range(n)]

    first, again, other = take(0), take(0), take(1)
    for a, b in zip(first, again):
        assert a["key"] == b["key"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["class_id"], b["class_id"])
    assert [a["key"] for a in first] != [c["key"] for c in other]


def test_train_loader_is_infinite_shuffled_and_flips(dataset) -> None:
    loader = make_train_loader(dataset["pattern"], SIZE, batch_size=7, seed=3, random_crop=False, shuffle_buffer=10)
    iterator = iter(loader)
    batches = [next(iterator) for _ in range(12)]  # 84 samples from a 21-sample set
    keys = [k for b in batches for k in b["key"]]
    assert set(keys) <= set(dataset["keys"]) and len(set(keys)) >= 15
    assert keys[:21] != dataset["keys"]  # shuffled, not in storage order
    flipped = same = 0
    for batch in batches:
        for key, image in zip(batch["key"], batch["image"]):
            view = official_eval_view(dataset["images"][key])  # random_crop=False: the centre crop
            if torch.allclose(image, view, atol=1 / 255 + 1e-6):
                same += 1
            else:
                assert torch.allclose(image, view.flip(-1), atol=1 / 255 + 1e-6), key
                flipped += 1
    assert flipped > 10 and same > 10
    assert loader.stats.samples >= 84


def test_random_crop_is_a_window_of_the_resized_image(dataset) -> None:
    """Shard 1's 48x40 images resize to 38x32: a random crop is one of 7 horizontal offsets."""
    loader = make_train_loader(str(dataset["root"] / "train-000001.tar"), SIZE, batch_size=7, seed=0, flip=False,
                               shuffle_buffer=0)
    resize = v2.Compose([v2.PILToTensor(), v2.Resize(SIZE, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                         v2.ToDtype(torch.float32, scale=True)])
    offsets = set()
    iterator = iter(loader)
    for _ in range(4):
        batch = next(iterator)
        for key, image in zip(batch["key"], batch["image"]):
            full = resize(dataset["images"][key])
            assert full.shape == (3, SIZE, 38)
            errors = [(image - full[:, :, x:x + SIZE]).abs().max().item() for x in range(38 - SIZE + 1)]
            assert min(errors) <= 1 / 255 + 1e-6
            offsets.add(int(np.argmin(errors)))
    assert len(offsets) >= 3  # not always the centre


def test_shard_lists_patterns_and_missing_paths(dataset) -> None:
    as_list = [str(dataset["root"] / f"train-{s:06d}.tar") for s in range(3)]
    from_list = [k for b in make_eval_loader(as_list, SIZE, 8) for k in b["key"]]
    assert from_list == dataset["keys"]
    with pytest.raises(FileNotFoundError, match=r"1 of 4 shard files do not exist: .*train-000003\.tar"):
        make_eval_loader(str(dataset["root"] / "train-{000000..000003}.tar"), SIZE, 8)
    with pytest.raises(ValueError, match="no shard"):
        make_train_loader([], SIZE, 8)


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory, kit) -> dict:
    """One shard with every kind of bad sample between good ones, one truncated shard, one good shard."""
    root = tmp_path_factory.mktemp("corrupt")
    good = lambda key, seed: kit.sample(key, kit.image(SIZE, SIZE, seed), 1)  # noqa: E731
    png = kit.encode(kit.image(SIZE, SIZE, 99))
    bad = [
        good("a0", 0),
        {"__key__": "a1", "png": png[: len(png) // 2], "cls": b"1"},                 # truncated PNG
        {"__key__": "a2", "png": b"this is a text file, not an image\n", "cls": b"1"},  # text renamed .png
        good("a3", 3),
        {"__key__": "a4", "png": png},                                               # no cls
        {"__key__": "a5", "png": png, "cls": b"cat"},                                 # non-integer cls
        {"__key__": "a6", "cls": b"2", "txt": b"caption without an image"},           # no image
        good("a7", 7),
    ]
    kit.write(root / "mix-000000.tar", bad)
    # A shard cut in the middle of its third sample: the first two samples survive.
    full = kit.write(root / "full.tar", [good(f"b{i}", 10 + i) for i in range(4)])
    data = Path(full).read_bytes()
    with tarfile.open(full) as tar:
        third = [m for m in tar.getmembers() if m.name.startswith("b2.")][0]
    (root / "mix-000001.tar").write_bytes(data[: third.offset_data + 100])
    Path(full).unlink()
    kit.write(root / "mix-000002.tar", [good("c0", 20), good("c1", 21)])
    return {"pattern": str(root / "mix-{000000..000002}.tar"), "root": root,
            "good": ["a0", "a3", "a7", "b0", "b1", "c0", "c1"],
            "skipped": {"corrupt_image": 2, "missing_label": 1, "bad_label": 1, "missing_image": 1, "corrupt_tar": 1}}


def test_corrupt_samples_are_skipped_counted_and_logged(corrupt, caplog) -> None:
    loader = make_eval_loader(corrupt["pattern"], SIZE, batch_size=3)
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        keys = [k for b in loader for k in b["key"]]
    assert keys == corrupt["good"]
    stats = loader.stats
    assert dict(stats.skipped) == corrupt["skipped"]
    assert stats.samples == 7 and stats.total_skipped == 6 and stats.shards_opened == 3
    assert any("a1" in example for example in stats.examples["corrupt_image"])
    assert "mix-000001.tar" in stats.examples["corrupt_tar"][0]
    assert "6 skipped" in stats.summary()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("bad_label" in w and "a5" in w for w in warnings)
    assert any("finished" in w and "6 skipped" in w for w in warnings)


def test_train_loader_skips_bad_samples_and_keeps_going(corrupt) -> None:
    loader = make_train_loader(corrupt["pattern"], SIZE, batch_size=4, seed=0, shuffle_buffer=4)
    iterator = iter(loader)
    keys = [k for _ in range(10) for k in next(iterator)["key"]]
    assert set(keys) <= set(corrupt["good"])
    assert set(loader.stats.skipped) <= set(corrupt["skipped"]) and loader.stats.total_skipped >= 5


def test_worker_processes_report_their_skips(corrupt) -> None:
    loader = make_eval_loader(corrupt["pattern"], SIZE, batch_size=2, num_workers=2)
    keys = sorted(k for b in loader for k in b["key"])
    assert keys == sorted(corrupt["good"])
    assert dict(loader.stats.skipped) == corrupt["skipped"] and loader.stats.samples == 7


def test_unreadable_shards_only_raise_instead_of_spinning(tmp_path) -> None:
    (tmp_path / "junk-000000.tar").write_bytes(b"\x00garbage" * 300)
    loader = make_train_loader(str(tmp_path / "junk-000000.tar"), SIZE, batch_size=2)
    with pytest.raises(DataError, match=r"20 shard reads in a row gave no sample: .*corrupt_tar 20"):
        next(iter(loader))
