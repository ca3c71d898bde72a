"""Each rank's disjoint share of a dataset, resumable from a position.

Sample i of the stream (folder order, then shard by shard; the first ``limit`` samples) belongs to rank
``i % world``. Every image is therefore counted exactly once whatever the number of ranks and however the
shards split, and ranks differ by at most one image. A rank only decodes its own images; the others' bytes
are skipped. ``skip`` drops a rank's first images (a resumed run's done part) without decoding them.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import torch

from .data import ImageBatch, decode_sample, iter_samples


def rank_share(total: int, rank: int, world: int) -> int:
    """How many of ``total`` images rank ``rank`` of ``world`` evaluates."""
    return len(range(rank, total, world))


def iter_rank_batches(source: str | os.PathLike | Sequence[str | os.PathLike], image_size: int, batch_size: int,
                      limit: int | None = None, rank: int = 0, world: int = 1, skip: int = 0
                      ) -> Iterator[tuple[ImageBatch, list[int]]]:
    """(batch, global sample indices) of this rank's images after its first ``skip`` ones."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    images: list[torch.Tensor] = []
    keys: list[str] = []
    indices: list[int] = []
    own = 0
    for index, (key, data) in enumerate(iter_samples(source)):
        if limit is not None and index >= limit:
            break
        if index % world != rank:
            continue
        own += 1
        if own <= skip:
            continue
        images.append(decode_sample(key, data, image_size))
        keys.append(key)
        indices.append(index)
        if len(images) == batch_size:
            yield ImageBatch(torch.stack(images), tuple(keys)), indices
            images, keys, indices = [], [], []
    if images:
        yield ImageBatch(torch.stack(images), tuple(keys)), indices
