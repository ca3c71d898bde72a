"""Train and eval batch streams over webdataset shards (reference section 5).

Train: shards drawn with replacement forever (the official ``ResampledShards``), a shuffle buffer
over raw samples, resize shorter side -> random (or centre) crop -> random horizontal flip.
Eval: shards in order, centre crop, finite, partial last batch kept.

Work is split over processes (``RANK``/``WORLD_SIZE`` or an initialised ``torch.distributed``) and
DataLoader workers: for training every (rank, worker) pair -- a reader -- reads its own subset of
shards (reader k of M: shards k, k+M, k+2M, ...) when there are at least M shards, and its own
random stream either way; with fewer shards than readers every reader reads them all (see
:func:`shard_split_note`). For evaluation shards are split over workers only, so every rank sees the
whole eval set, as in the official loader. ``shuffle=False`` reads a reader's shards in order,
cyclically, with no shuffle buffer: one shard per rank then gives a known sample order per rank.

Skipped samples are counted per worker and shipped to the main process with each batch; the
loader's ``stats`` property is their sum as of the last batch received.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .samples import Sample, SkipSample, decode_sample
from .shards import RawSample, ShardSpec, expand_shards, iter_raw_samples
from .stats import DataStats
from .transforms import crop_square, eval_view, hflip, resize_shorter, to_tensor

logger = logging.getLogger("trainers.data")

MAX_CONSECUTIVE_SKIPS = 10_000  # a stream that only skips is broken data, not bad luck


class DataError(RuntimeError):
    """The shards yield no usable samples at all (every shard broken, or every sample skipped)."""


@dataclass(frozen=True)
class StreamConfig:
    urls: tuple[str, ...]
    image_size: int
    batch_size: int
    train: bool
    seed: int = 0
    random_crop: bool = True
    flip: bool = True
    with_proxy_codes: bool = False
    shuffle_buffer: int = 1000
    shuffle: bool = True  # False: shards in order, cyclically, no shuffle buffer

    def __post_init__(self) -> None:
        for name in ("image_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer: must be >= 0, got {self.shuffle_buffer}")


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def reader_shards(urls: Sequence[str], reader: int, readers: int) -> list[str]:
    """The training shards of reader ``reader`` of ``readers``: every ``readers``-th one, or all when too few."""
    return list(urls[reader::readers]) if len(urls) >= readers else list(urls)


def shard_split_note(shards: ShardSpec, readers: int) -> str | None:
    """Why a shard set splits unevenly over ``readers`` (ranks x workers), or None when it splits evenly."""
    count = len(expand_shards(shards))
    if readers <= 1 or count % readers == 0:
        return None
    if count < readers:
        return (f"{count} training shards for {readers} readers (ranks x data workers): every reader reads every "
                f"shard, in its own random order, so ranks see overlapping samples; use a multiple of {readers} "
                f"shards for disjoint ones")
    return (f"{count} training shards over {readers} readers (ranks x data workers): reader k reads shards k, "
            f"k+{readers}, ...; {count % readers} reader(s) get one shard more, so samples in the smaller groups "
            f"come up more often; use a multiple of {readers} shards for an even split")


def _shuffled(items: Iterator[RawSample], size: int, rng: random.Random) -> Iterator[RawSample]:
    """Reservoir-style shuffle buffer: emit a random buffered item for every new one (size 0: no shuffle)."""
    if size <= 0:
        yield from items
        return
    buffer: list[RawSample] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


class BatchStream(IterableDataset):
    """One process's (or DataLoader worker's) batches; a final ``{"_stats": ...}`` item closes a finite pass."""

    def __init__(self, config: StreamConfig) -> None:
        super().__init__()
        self.config = config

    def _raw_samples(self, stats: DataStats) -> tuple[Iterator[RawSample], random.Random | None]:
        """This consumer's raw samples, and the random stream for shuffling and augmenting (train only)."""
        cfg = self.config
        worker, workers = _worker()
        if not cfg.train:
            return iter_raw_samples(cfg.urls[worker::workers], stats), None
        rank, world = _rank_and_world()
        consumer, consumers = rank * workers + worker, world * workers
        urls = reader_shards(cfg.urls, consumer, consumers)
        rng = random.Random(f"sftok-train/{cfg.seed}/{consumer}")  # str seeds hash stably across runs
        if not cfg.shuffle:
            return self._cycled(urls, stats), rng
        return _shuffled(self._resampled(urls, rng, stats), cfg.shuffle_buffer, rng), rng

    def __iter__(self) -> Iterator[dict]:
        cfg = self.config
        worker = _worker()[0]
        stats = DataStats()
        raw, rng = self._raw_samples(stats)
        batch: list[tuple] = []
        consecutive_skips = 0
        for item in raw:
            try:
                sample = decode_sample(item, cfg.with_proxy_codes)
            except SkipSample as skip:
                stats.skip(skip.reason, f"{item['__key__']} @ {item['__url__']}", skip.detail)
                consecutive_skips += 1
                if consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                    raise DataError(f"{consecutive_skips} samples in a row were skipped: {stats.summary()}; "
                                    f"examples: {stats.examples}") from skip
                continue
            consecutive_skips = 0
            batch.append(self._transform(sample, item["__url__"], rng))
            stats.samples += 1
            if len(batch) == cfg.batch_size:
                yield self._collate(batch, worker, stats)
                batch = []
        if batch:
            yield self._collate(batch, worker, stats)
        yield {"_stats": (worker, stats.to_dict())}

    def _resampled(self, urls: list[str], rng: random.Random, stats: DataStats) -> Iterator[RawSample]:
        """Shards drawn with replacement, forever; fails if many draws in a row give no sample."""
        limit = max(20, 3 * len(urls))
        empty_draws = 0
        while True:
            got_any = False
            for item in iter_raw_samples([rng.choice(urls)], stats):
                got_any = True
                yield item
            empty_draws = 0 if got_any else empty_draws + 1
            if empty_draws >= limit:
                raise DataError(f"{empty_draws} shard reads in a row gave no sample: {stats.summary()}; "
                                f"examples: {stats.examples}")

    def _cycled(self, urls: list[str], stats: DataStats) -> Iterator[RawSample]:
        """The shards in order, again and again; fails if a whole pass gives no sample."""
        while True:
            got_any = False
            for item in iter_raw_samples(urls, stats):
                got_any = True
                yield item
            if not got_any:
                raise DataError(f"a pass over {len(urls)} shard(s) gave no sample: {stats.summary()}; "
                                f"examples: {stats.examples}")

    def _transform(self, sample: Sample, url: str, rng: random.Random | None) -> tuple:
        cfg, size = self.config, self.config.image_size
        codes = sample.proxy
        if rng is None:
            image = eval_view(sample.image, size)
        else:
            image = resize_shorter(sample.image, size)
            if cfg.with_proxy_codes and cfg.random_crop and image.size != (size, size):
                raise ValueError(
                    f"random_crop: sample {sample.key} @ {url} is {image.size[0]}x{image.size[1]} after resizing, "
                    f"so a random {size}x{size} crop would not match its cached proxy codes (computed on the "
                    f"centre crop); use random_crop=False, or cache shards whose images are already {size}x{size}")
            image = crop_square(image, size, rng if cfg.random_crop else None)
            if cfg.flip and rng.random() < 0.5:
                image, codes = hflip(image), sample.proxy_flip
        if cfg.with_proxy_codes and sample.proxy_size != size:
            raise ValueError(f"image_size: proxy codes in {url} were cached at image_size {sample.proxy_size}, "
                             f"but the loader uses {size}; cache the shards again at {size}")
        return to_tensor(image), sample.class_id, sample.key, codes

    def _collate(self, batch: list[tuple], worker: int, stats: DataStats) -> dict:
        images, labels, keys, codes = zip(*batch)
        out = {"image": torch.stack(images), "class_id": torch.tensor(labels, dtype=torch.long), "key": list(keys)}
        if self.config.with_proxy_codes:
            out["proxy_codes"] = torch.from_numpy(np.stack(codes).astype(np.int64))
        out["_stats"] = (worker, stats.to_dict())
        return out


class ShardLoader:
    """Iterable of batch dicts (``image``, ``class_id``, ``key``[, ``proxy_codes``]) with live ``stats``."""

    def __init__(self, config: StreamConfig, num_workers: int = 0) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers: must be >= 0, got {num_workers}")
        self.config = config
        self.num_workers = num_workers
        self._parts: dict[int, DataStats] = {}

    @property
    def shards(self) -> list[str]:
        return list(self.config.urls)

    @property
    def stats(self) -> DataStats:
        """Samples yielded and skipped (by reason) in the current or last pass, summed over workers."""
        return DataStats.combine(list(self._parts.values()))

    def __iter__(self) -> Iterator[dict]:
        self._parts = {}
        stream = BatchStream(self.config)
        source = iter(stream) if self.num_workers == 0 else iter(
            DataLoader(stream, batch_size=None, num_workers=self.num_workers))
        for item in source:
            worker, data = item.pop("_stats")
            self._parts[int(worker)] = DataStats.from_dict(data)
            if "image" in item:
                yield item
        stats = self.stats
        if stats.total_skipped:
            logger.warning("data pass over %d shards finished: %s", len(self.config.urls), stats.summary())


def make_train_loader(shards: ShardSpec, image_size: int, batch_size: int, seed: int = 0, num_workers: int = 0,
                      random_crop: bool = True, flip: bool = True, with_proxy_codes: bool = False,
                      shuffle_buffer: int = 1000, shuffle: bool = True) -> ShardLoader:
    """Infinite, shuffled training batches; the same seed gives the same batches (``num_workers=0``).
    ``shuffle=False``: this reader's shards in order, cyclically (crop and flip still follow the seed).

    With ``with_proxy_codes`` each batch also holds ``proxy_codes`` (B, S) long: the cached teacher
    codes of exactly the image in the batch (the flipped codes when the image was flipped). The
    codes were computed on the centre crop, so ``random_crop`` must be False unless the stored
    images are already ``image_size`` squares (then every crop is the centre crop); a sample that
    breaks this raises ``ValueError``.
    """
    config = StreamConfig(tuple(expand_shards(shards)), image_size, batch_size, train=True, seed=seed,
                          random_crop=random_crop, flip=flip, with_proxy_codes=with_proxy_codes,
                          shuffle_buffer=shuffle_buffer, shuffle=shuffle)
    return ShardLoader(config, num_workers)


def make_eval_loader(shards: ShardSpec, image_size: int, batch_size: int, num_workers: int = 0,
                     with_proxy_codes: bool = False) -> ShardLoader:
    """One ordered pass (shard order, then tar order; per worker when ``num_workers`` > 0), centre crop,
    partial last batch kept."""
    config = StreamConfig(tuple(expand_shards(shards)), image_size, batch_size, train=False,
                          random_crop=False, flip=False, with_proxy_codes=with_proxy_codes)
    return ShardLoader(config, num_workers)
