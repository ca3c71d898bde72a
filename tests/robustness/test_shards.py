"""Corrupt shards: every bad sample is skipped and counted under its reason, every good one arrives
exactly once, and a shard that breaks mid-way loses only the sample being read when it broke."""
from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.robustness.hostile_images import png_with_header
from trainers.data import make_eval_loader, make_train_loader
from trainers.data.shards import encode_npy, tar_writer


def _png(seed: int, size: tuple[int, int] = (40, 36)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _good(i: int) -> dict:
    return {"__key__": f"good{i:04d}", "png": _png(i), "cls": str(i % 10).encode()}


GOOD_PNG = _png(999)
TRUNCATED = GOOD_PNG[: len(GOOD_PNG) // 2]
# (key suffix, members, the reason it must be counted under)
BAD_SAMPLES = [
    ("truncated_png", {"png": TRUNCATED, "cls": b"1"}, "corrupt_image"),
    ("text_as_jpg", {"jpg": b"not a jpeg at all", "cls": b"1"}, "corrupt_image"),
    ("empty_png", {"png": b"", "cls": b"1"}, "corrupt_image"),
    ("bad_zlib", {"png": png_with_header(8, 8, idat=b"\x78\x9c" + b"\xff" * 40), "cls": b"1"}, "corrupt_image"),
    ("bomb_header", {"png": png_with_header(20000, 20000), "cls": b"1"}, "image_too_large"),
    ("bomb_under_pil_limit", {"png": png_with_header(9000, 9000), "cls": b"1"}, "image_too_large"),
    ("strip", {"png": png_with_header(65000, 1), "cls": b"1"}, "image_too_large"),
    ("no_image", {"cls": b"1", "txt": b"caption only"}, "missing_image"),
    ("no_label", {"png": GOOD_PNG}, "missing_label"),
    ("label_float", {"png": GOOD_PNG, "cls": b"3.5"}, "bad_label"),
    ("label_word", {"png": GOOD_PNG, "cls": b"cat"}, "bad_label"),
    ("label_json_list", {"png": GOOD_PNG, "cls": b"[1, 2]"}, "bad_label"),
    ("label_negative", {"png": GOOD_PNG, "cls": b"-4"}, "bad_label"),
    ("label_huge", {"png": GOOD_PNG, "cls": b"99999999999999999999999"}, "bad_label"),
    ("label_underscore", {"png": GOOD_PNG, "cls": b"1_000"}, "bad_label"),
    ("label_arabic_digit", {"png": GOOD_PNG, "cls": "\u0663".encode()}, "bad_label"),
    ("label_binary", {"png": GOOD_PNG, "cls": b"\xff\xfe\x00"}, "bad_label"),
    ("label_empty", {"png": GOOD_PNG, "cls": b""}, "bad_label"),
]


def _write(path: Path, samples: list[dict]) -> str:
    with tar_writer(path) as writer:
        for sample in samples:
            writer.write(sample)
    return str(path)


def _keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["key"]]


@pytest.fixture(scope="module")
def mixed_shard(tmp_path_factory) -> tuple[str, list[str]]:
    """One shard: good samples with every kind of bad one between them."""
    folder = tmp_path_factory.mktemp("mixed")
    samples, good = [], []
    for i, (name, members, _) in enumerate(BAD_SAMPLES):
        sample = _good(i)
        samples.append(sample)
        good.append(sample["__key__"])
        samples.append({"__key__": f"bad_{name}", **members})
    return _write(folder / "mixed-000000.tar", samples), good


def test_every_bad_sample_is_skipped_and_counted_by_reason(mixed_shard, tally):
    shard, good = mixed_shard
    loader = make_eval_loader(shard, image_size=32, batch_size=5)
    keys = _keys(loader)
    tally.input("shards", len(BAD_SAMPLES))
    tally.rows(len(good), len(set(keys) & set(good)))
    assert keys == good  # all good ones, once each, in order
    expected = Counter(reason for _, _, reason in BAD_SAMPLES)
    assert dict(loader.stats.skipped) == dict(expected)
    assert loader.stats.samples == len(good) and loader.stats.total_skipped == len(BAD_SAMPLES)
    for reason in expected:
        assert loader.stats.examples[reason], reason  # examples name the sample and shard
    assert any("bad_label_huge" in e and "larger than" in e for e in loader.stats.examples["bad_label"])


def test_training_stream_keeps_going_past_bad_samples(mixed_shard, tally):
    shard, good = mixed_shard
    loader = make_train_loader(shard, image_size=32, batch_size=6, seed=0, shuffle_buffer=8)
    stream = iter(loader)
    batches = [next(stream) for _ in range(8)]  # > 2 passes over the shard's good samples
    tally.input("shards", loader.stats.total_skipped)
    assert all(b["image"].shape == (6, 3, 32, 32) for b in batches)
    assert {k for b in batches for k in b["key"]} == set(good)
    assert all(int(c) < 10 for b in batches for c in b["class_id"])
    assert loader.stats.total_skipped >= 2 * len(BAD_SAMPLES)


def _member_offsets(path: Path) -> list[tuple[str, int, int]]:
    """(name, header offset, data offset) of every member, in tar order."""
    with tarfile.open(path) as tar:
        return [(m.name, m.offset, m.offset_data) for m in tar.getmembers()]


@pytest.mark.parametrize("where", ["header_at_sample_boundary", "before_first_member_data", "inside_image_data"])
def test_shard_cut_mid_way_loses_only_the_sample_being_read(tmp_path, where, tally):
    samples = [_good(i) for i in range(12)]
    full = Path(_write(tmp_path / "full.tar", samples))
    members = _member_offsets(full)
    first = next(m for m in members if m[0].startswith("good0007."))  # the 8th sample's first member
    image = next(m for m in members if m[0] == "good0007.png")
    cut = {"header_at_sample_boundary": first[1] + 100,  # Python's tarfile alone would end the shard quietly
           "before_first_member_data": first[2],  # header complete, data missing
           "inside_image_data": image[2] + 200}[where]
    broken = tmp_path / "broken-000000.tar"
    broken.write_bytes(full.read_bytes()[:cut])
    after = _write(tmp_path / "after-000000.tar", [_good(100 + i) for i in range(3)])
    garbage = tmp_path / "garbage-000000.tar"
    garbage.write_bytes(b"\x00\x01garbage" * 300)
    loader = make_eval_loader([str(broken), str(garbage), after], image_size=32, batch_size=4)
    keys = _keys(loader)
    expected = [f"good{i:04d}" for i in range(7)] + [f"good{100 + i:04d}" for i in range(3)]
    tally.fault("shards", 2)
    tally.rows(len(expected), len(set(keys) & set(expected)))
    assert keys == expected  # the 7 complete samples before the cut all arrive
    assert dict(loader.stats.skipped) == {"corrupt_tar": 2}  # the cut is counted, not silent
    assert loader.stats.shards_opened == 3


def test_clean_shard_without_end_blocks_is_not_an_error(tmp_path):
    full = Path(_write(tmp_path / "full.tar", [_good(i) for i in range(3)]))
    members = _member_offsets(full)
    with tarfile.open(full) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + ((last.size + 511) // 512) * 512
    assert end < full.stat().st_size and members[-1][0] == last.name
    bare = tmp_path / "bare-000000.tar"
    bare.write_bytes(full.read_bytes()[:end])  # what some streaming writers leave: no zero blocks
    loader = make_eval_loader(str(bare), image_size=32, batch_size=4)
    assert _keys(loader) == ["good0000", "good0001", "good0002"] and loader.stats.total_skipped == 0


def test_proxy_members_that_lie_are_skipped(tmp_path, tally):
    codes = np.arange(16, dtype=np.int16)
    base = {"png": _png(1, (32, 32)), "cls": b"2", "proxy_size": b"32"}
    variants = {
        "ok": ({"proxy.npy": encode_npy(codes), "proxy_flip.npy": encode_npy(codes[::-1])}, None),
        "negative": ({"proxy.npy": encode_npy(codes - 5), "proxy_flip.npy": encode_npy(codes)}, "bad_proxy"),
        "float": ({"proxy.npy": encode_npy(codes.astype(np.float32)), "proxy_flip.npy": encode_npy(codes)}, "bad_proxy"),
        "2d": ({"proxy.npy": encode_npy(codes.reshape(4, 4)), "proxy_flip.npy": encode_npy(codes)}, "bad_proxy"),
        "lengths": ({"proxy.npy": encode_npy(codes), "proxy_flip.npy": encode_npy(codes[:8])}, "bad_proxy"),
        "not_npy": ({"proxy.npy": b"\x93NUMPY garbage", "proxy_flip.npy": encode_npy(codes)}, "bad_proxy"),
        "pickled": ({"proxy.npy": _pickled_npy(), "proxy_flip.npy": encode_npy(codes)}, "bad_proxy"),
        "missing": ({"proxy.npy": encode_npy(codes)}, "missing_proxy"),
    }
    samples = [{"__key__": name, **base, **members} for name, (members, _) in variants.items()]
    loader = make_eval_loader(_write(tmp_path / "proxy-000000.tar", samples), 32, 4, with_proxy_codes=True)
    batches = list(loader)
    tally.input("shards", len(variants) - 1)
    assert [k for b in batches for k in b["key"]] == ["ok"]
    assert batches[0]["proxy_codes"].tolist() == [codes.tolist()]
    assert dict(loader.stats.skipped) == {"bad_proxy": 6, "missing_proxy": 1}


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()
