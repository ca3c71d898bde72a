"""Cached teacher proxy codes equal the codes the teacher gives on the fly for the same (flipped) image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core import MaskGITVQGAN
from core.presets import TINY_TEACHER
from trainers.data import cache_proxy_codes, make_eval_loader, make_train_loader
from trainers.data.shards import decode_npy, read_shard

SIZE = 64


@pytest.fixture(scope="module")
def teacher() -> MaskGITVQGAN:
    torch.manual_seed(0)
    return MaskGITVQGAN(TINY_TEACHER).eval()


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory, kit, teacher) -> dict:
    """Shard 0: six 64x64 images; shard 1: five 80x72 images (resized + centre-cropped) and one broken."""
    root = tmp_path_factory.mktemp("proxy")
    src0 = kit.write(root / "src" / "train-000000.tar",
                     [kit.sample(f"s{i}", kit.image(SIZE, SIZE, i), i) for i in range(6)])
    broken = {"__key__": "t5", "png": b"not a png", "cls": b"0"}
    src1 = kit.write(root / "src" / "train-000001.tar",
                     [kit.sample(f"t{i}", kit.image(80, 72, 10 + i), i) for i in range(5)] + [broken])
    cache = cache_proxy_codes(teacher, [src0, src1], root / "cached", SIZE, batch_size=4)
    return {"root": root, "src": [src0, src1], "cache": cache}


def test_cache_writes_same_samples_plus_codes(cached) -> None:
    cache = cached["cache"]
    assert [Path(p).name for p in cache.shards] == ["train-000000.tar", "train-000001.tar"]
    assert cache.samples == 11 and dict(cache.stats.skipped) == {"corrupt_image": 1}
    originals = {s["__key__"]: s for url in cached["src"] for s in read_shard(url)}
    for sample in read_shard(cache.shards[0]):
        original = originals[sample["__key__"]]
        assert sample["png"] == original["png"] and sample["cls"] == original["cls"]
        codes = decode_npy(sample["proxy.npy"])
        assert codes.dtype == np.int16 and codes.shape == (256,) and sample["proxy_size"] == b"64"
        assert 0 <= codes.min() and codes.max() < TINY_TEACHER.codebook_size
        assert not np.array_equal(codes, decode_npy(sample["proxy_flip.npy"]))


def test_eval_loader_codes_equal_on_the_fly_codes(cached, teacher) -> None:
    batches = list(make_eval_loader(cached["cache"].shards, SIZE, batch_size=5, with_proxy_codes=True))
    assert [len(b["key"]) for b in batches] == [5, 5, 1]
    for batch in batches:
        assert batch["proxy_codes"].dtype == torch.long and batch["proxy_codes"].shape[1] == 256
        assert torch.equal(batch["proxy_codes"], teacher.encode(batch["image"]))
    assert len(torch.unique(batches[0]["proxy_codes"])) > 20  # real, varied codes


def test_train_loader_picks_the_codes_of_the_flip_it_made(cached, teacher) -> None:
    loader = make_train_loader(cached["cache"].shards, SIZE, batch_size=6, seed=0, random_crop=False,
                               with_proxy_codes=True, shuffle_buffer=4)
    iterator = iter(loader)
    stored = {s["__key__"]: decode_npy(s["proxy_flip.npy"]) for url in cached["cache"].shards for s in read_shard(url)}
    flipped = 0
    for _ in range(4):
        batch = next(iterator)
        assert torch.equal(batch["proxy_codes"], teacher.encode(batch["image"]))
        flipped += sum(np.array_equal(codes.numpy(), stored[key])
                       for key, codes in zip(batch["key"], batch["proxy_codes"]))
    assert 0 < flipped < 24


def test_random_crop_only_where_it_cannot_change_the_codes(cached) -> None:
    square = make_train_loader(cached["cache"].shards[0], SIZE, batch_size=3, with_proxy_codes=True, shuffle_buffer=4)
    assert next(iter(square))["image"].shape == (3, 3, SIZE, SIZE)  # 64x64 images: every crop is the centre
    larger = make_train_loader(cached["cache"].shards[1], SIZE, batch_size=3, with_proxy_codes=True, shuffle_buffer=4)
    with pytest.raises(ValueError, match="random_crop: .* is 71x64 after resizing"):
        next(iter(larger))
    wrong_size = make_eval_loader(cached["cache"].shards, 32, batch_size=3, with_proxy_codes=True)
    with pytest.raises(ValueError, match="cached at image_size 64, but the loader uses 32"):
        next(iter(wrong_size))


def test_uncached_shards_count_missing_codes_and_cache_refuses_overwrite(cached, teacher) -> None:
    loader = make_eval_loader(cached["src"][0], SIZE, batch_size=3, with_proxy_codes=True)
    assert list(loader) == []
    assert dict(loader.stats.skipped) == {"missing_proxy": 6}
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        cache_proxy_codes(teacher, cached["src"], cached["root"] / "cached", SIZE)
