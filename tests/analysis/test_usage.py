"""Codebook usage on hand-made histograms, streaming equivalence, and the per-code reservoir."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.reservoir import CodeReservoir
from analysis.usage import CodebookUsage, usage_from_counts


def test_usage_statistics_of_a_hand_made_histogram() -> None:
    # 2 positions x 4 codes; code 3 is dead.
    counts = np.array([[2, 2, 0, 0],
                       [0, 2, 2, 0]])
    stats = usage_from_counts(counts, num_samples=4, top_k=2)
    assert stats.counts.tolist() == [2, 4, 2, 0]
    assert stats.utilisation == 0.75
    assert stats.used_codes == 3
    assert stats.dead_codes.tolist() == [3]
    assert stats.entropy_bits == pytest.approx(1.5)  # p = (1/4, 1/2, 1/4)
    assert stats.perplexity == pytest.approx(2 ** 1.5)
    assert stats.normalized_entropy == pytest.approx(0.75)
    assert stats.position_entropy_bits.tolist() == pytest.approx([1.0, 1.0])
    assert stats.position_utilisation.tolist() == [0.5, 0.5]
    assert stats.most_used == ((1, 4), (0, 2))
    assert stats.least_used == ((2, 2), (0, 2))
    assert stats.summary()["dead_codes"] == 1


def test_streamed_usage_equals_usage_of_the_pooled_set_not_a_mean_of_batches() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (300, 8))
    acc = CodebookUsage(codebook_size=64, num_positions=8)
    for chunk in np.array_split(ids, 7):
        acc.update(torch.from_numpy(chunk).unsqueeze(1))  # (B, 1, P) as SFTok.encode returns
    stats = acc.result()
    pooled = np.bincount(ids.ravel(), minlength=64)
    assert stats.counts.tolist() == pooled.tolist()
    p = pooled[pooled > 0] / pooled.sum()
    assert stats.entropy_bits == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert stats.num_samples == 300 and stats.num_tokens == 2400
    assert stats.dead_codes.tolist() == list(range(50, 64))
    per_batch = np.mean([usage_from_counts(np.bincount(c.ravel(), minlength=64)[None], len(c)).entropy_bits
                         for c in np.array_split(ids, 7)])
    assert stats.entropy_bits > per_batch + 0.05  # why the accumulator pools counts
    col = ids[:, 5]
    q = np.bincount(col, minlength=64) / col.size
    q = q[q > 0]
    assert stats.position_entropy_bits[5] == pytest.approx(float(-(q * np.log2(q)).sum()))


def test_usage_rejects_bad_ids_by_name() -> None:
    acc = CodebookUsage(codebook_size=8, num_positions=4)
    with pytest.raises(ValueError, match=r"ids: values must lie in \[0, 8\)"):
        acc.update(np.array([[0, 1, 2, 8]]))
    with pytest.raises(ValueError, match=r"expected shape \(B, 4\)"):
        acc.update(np.zeros((2, 5), dtype=int))
    with pytest.raises(ValueError, match="reservoir_size=0"):
        acc.examples(0)


def test_reservoir_keeps_everything_under_capacity_and_is_uniform_beyond() -> None:
    usage = CodebookUsage(codebook_size=4, num_positions=3, reservoir_size=8, seed=0)
    usage.update(np.array([[0, 1, 0], [2, 0, 3]]), keys=["a", "b"])
    assert usage.examples(0) == [("a", 0), ("a", 2), ("b", 1)]
    assert usage.examples(3) == [("b", 2)]
    assert usage.result().examples[1] == (("a", 1),)
    # One code occurring 10 times in 10 samples, capacity 2: each occurrence kept with probability 1/5.
    kept = np.zeros(10)
    trials = 1000
    for seed in range(trials):
        res = CodeReservoir(codebook_size=1, capacity=2, seed=seed)
        for first in (0, 4, 7):  # uneven batches
            last = {0: 4, 4: 7, 7: 10}[first]
            res.update(np.zeros((last - first, 1), dtype=np.int64), [str(i) for i in range(first, last)])
        refs = res.examples(0)
        assert len(refs) == 2 and len({k for k, _ in refs}) == 2
        for key, _ in refs:
            kept[int(key)] += 1
    freq = kept / trials
    assert freq.sum() == pytest.approx(2.0)
    assert np.abs(freq - 0.2).max() < 4 * math.sqrt(0.2 * 0.8 / trials)


def test_one_codebook_per_position_counts_position_codes() -> None:
    """ReVQ-style: id 0 at position 0 and id 0 at position 1 are two codes (numbered position * K + id)."""
    counts = np.array([[2, 2, 0],   # position 0: ids 0, 1 twice each
                       [4, 0, 0]])  # position 1: id 0 four times
    stats = usage_from_counts(counts, num_samples=4, top_k=3, per_position=True)
    assert stats.codebook_size == 6 and stats.codes_per_position == 3
    assert stats.counts.tolist() == [2, 2, 0, 4, 0, 0]
    assert stats.used_codes == 3 and stats.utilisation == 0.5 and stats.dead_codes.tolist() == [2, 4, 5]
    assert stats.most_used == ((3, 4), (0, 2), (1, 2))
    # p = (1/4, 1/4, 1/2) over position-codes: 1.5 bits = log2(2 positions) + mean of (1, 0) bits per position
    assert stats.entropy_bits == pytest.approx(1.5)
    assert stats.position_entropy_bits.tolist() == pytest.approx([1.0, 0.0])
    assert stats.normalized_entropy == pytest.approx(1.5 / math.log2(6))
    assert stats.position_utilisation.tolist() == pytest.approx([2 / 3, 1 / 3])
    summary = stats.summary()
    assert summary["codes_per_position"] == 3 and summary["per_position_codebooks"] is True
    # pooled by id instead, the same matrix reads as a 3-code book with code 0 used 6 times
    assert usage_from_counts(counts, 4).counts.tolist() == [6, 2, 0]


def test_per_position_examples_name_the_position_code() -> None:
    usage = CodebookUsage(codebook_size=2, num_positions=2, reservoir_size=4, per_position=True)
    usage.update(np.array([[0, 1], [0, 0]]), keys=["a", "b"])
    stats = usage.result()
    assert stats.position_counts.tolist() == [[2, 0], [1, 1]]
    assert usage.examples(0) == [("a", 0), ("b", 0)]  # position 0, id 0
    assert usage.examples(2) == [("b", 1)] and usage.examples(3) == [("a", 1)]  # position 1, ids 0 and 1
    assert usage.examples(1) == [] and stats.examples[3] == (("a", 1),) and 1 not in stats.examples
    assert sorted(stats.examples) == [0, 2, 3]
    usage.update(np.array([[1, 1]]), keys=["c"])
    assert stats.position_counts.tolist() == [[2, 0], [1, 1]] and 1 not in stats.examples  # a result is a snapshot


def test_reservoir_memory_follows_the_codes_used_not_the_codebook() -> None:
    """512 positions x 4096 ids (ReVQ has 16384): a dense reservoir of 16 slots per position-code would take 512 MiB
    up front; these 8 images use 4096 position-codes."""
    import tracemalloc

    tracemalloc.start()
    try:
        usage = CodebookUsage(codebook_size=4096, num_positions=512, reservoir_size=16, per_position=True)
        rng = np.random.default_rng(0)
        ids = rng.integers(0, 4096, (8, 512))
        usage.update(ids, keys=[f"k{i}" for i in range(8)])
        stats = usage.result()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 160 * 2**20  # the (512, 4096) int64 counts are 16 MiB; statistics over them take a few copies
    code = 3 * 4096 + int(ids[5, 3])
    assert ("k5", 3) in usage.examples(code) and ("k5", 3) in stats.examples[code]
    assert stats.num_tokens == 8 * 512 and stats.used_codes == len(stats.examples)


def test_collect_tokenizer_usage_counts_encode_each_ids() -> None:
    """SFTok's ids come from encode_each (per-image Sinkhorn), the teacher's beside them at the same size."""
    from analysis.data import ImageBatch
    from analysis.usage import collect_tokenizer_usage
    from core import MaskGITVQGAN, SFTok, create_config
    from core.tokenizer import TeacherTokenizer, as_tokenizer

    torch.manual_seed(0)
    cfg = create_config("tiny", weight_init="pytorch")
    tok = as_tokenizer(SFTok(cfg).eval())
    teacher = TeacherTokenizer(MaskGITVQGAN(cfg.teacher).eval(), cfg.image_size)
    images = torch.rand(5, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    batches = [ImageBatch(images[:3], ("i0", "i1", "i2")), ImageBatch(images[3:], ("i3", "i4"))]
    own, proxy = collect_tokenizer_usage(tok, teacher, batches, reservoir=2, seed=0)
    ids, codes = tok.encode_each(images).numpy(), teacher.encode_each(images).numpy()
    assert own.num_tokens == 5 * 64 and proxy.num_tokens == 5 * 256 and not own.per_position
    assert own.counts.tolist() == np.bincount(ids.ravel(), minlength=1024).tolist()
    assert proxy.position_counts.shape == (256, cfg.teacher.codebook_size)
    assert proxy.counts.tolist() == np.bincount(codes.ravel(), minlength=cfg.teacher.codebook_size).tolist()
    with pytest.raises(ValueError, match="teacher: works at 256 px, the sftok tokenizer at 64 px"):
        collect_tokenizer_usage(tok, TeacherTokenizer(teacher.module, 256), batches)
    with pytest.raises(ValueError, match="holds no images"):
        collect_tokenizer_usage(tok, None, [])
