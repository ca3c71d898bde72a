"""Teacher proxy codes computed once and stored next to each sample.

Stages 1-2 train SFTok to predict the frozen MaskGIT-VQGAN teacher's codes of the training image.
The official loop re-encodes every batch with the teacher (reference section 4.2); on a CPU that
costs more than the student itself, so we encode each sample once, for the image *and* its
horizontal mirror, and the train loader picks the codes matching its flip.

A cached shard is the input shard with, per sample, three more members:
``proxy.npy`` and ``proxy_flip.npy`` ((S,) int16, or int32 for codebooks over 32768 entries) and
``proxy_size`` (the image_size, ASCII). The codes belong to the eval view (shorter side resized to
``image_size``, centre crop), which is why loaders reading them refuse random crops unless the
stored images are already ``image_size`` squares.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core import MaskGITVQGAN

from .samples import PROXY_MEMBERS, SkipSample, decode_sample
from .shards import RawSample, ShardSpec, encode_label, encode_npy, expand_shards, iter_raw_samples, tar_writer
from .stats import DataStats
from .transforms import eval_view, to_tensor


@dataclass
class ProxyCache:
    shards: list[str]   # written shards, same file names as the inputs
    samples: int
    image_size: int
    stats: DataStats    # samples skipped while reading the inputs (they are not written)


def _codes_dtype(codebook_size: int) -> type:
    return np.int16 if codebook_size <= np.iinfo(np.int16).max + 1 else np.int32


class _ShardEncoder:
    """Batches one shard's samples through the teacher and writes them with their codes."""

    def __init__(self, teacher: MaskGITVQGAN, writer, image_size: int, batch_size: int) -> None:
        self.teacher, self.writer = teacher, writer
        self.image_size, self.batch_size = image_size, batch_size
        self.device = next(teacher.parameters()).device
        self.dtype = _codes_dtype(teacher.config.codebook_size)
        self.pending: list[tuple[RawSample, torch.Tensor]] = []
        self.written = 0

    def add(self, raw: RawSample, image: torch.Tensor) -> None:
        self.pending.append((raw, image))
        if len(self.pending) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        raws, images = zip(*self.pending)
        x = torch.stack(images).to(self.device)
        codes = self.teacher.encode(torch.cat([x, x.flip(-1)])).cpu().numpy().astype(self.dtype)
        plain, mirrored = codes[: len(raws)], codes[len(raws):]
        for raw, code, code_flip in zip(raws, plain, mirrored):
            kept = {k: v for k, v in raw.items() if not k.startswith("__") and k not in PROXY_MEMBERS}
            self.writer.write({"__key__": raw["__key__"], **kept, "proxy.npy": encode_npy(code),
                               "proxy_flip.npy": encode_npy(code_flip), "proxy_size": encode_label(self.image_size)})
        self.written += len(raws)
        self.pending = []


def cache_proxy_codes(teacher: MaskGITVQGAN, shards: ShardSpec, out_dir: str | os.PathLike, image_size: int,
                      batch_size: int = 64, progress: bool = False) -> ProxyCache:
    """Encode every readable sample of ``shards`` with ``teacher`` and write ``out_dir/<same shard names>``.

    The teacher runs in eval mode on its own device; bad samples are skipped and counted in the
    returned ``stats``. Existing output shards are never overwritten.
    """
    urls = expand_shards(shards)
    names = [Path(url).name for url in urls]
    if len(set(names)) != len(names):
        raise ValueError("shards: input shards must have distinct file names (outputs keep the names)")
    if batch_size < 1 or image_size < 1:
        raise ValueError(f"batch_size / image_size: must be >= 1, got {batch_size} / {image_size}")
    out = Path(out_dir)
    clashes = [name for name in names if (out / name).exists()]
    if clashes:
        raise FileExistsError(f"{out} already holds {len(clashes)} of the output shards (first: {clashes[0]}); "
                              "refusing to overwrite")
    out.mkdir(parents=True, exist_ok=True)

    was_training = teacher.training
    teacher.eval()
    stats, written, total = DataStats(), [], 0
    try:
        for url, name in tqdm(list(zip(urls, names)), desc="proxy codes", unit="shard", disable=not progress):
            partial = out / f".{name}.partial"
            with tar_writer(partial) as writer:
                encoder = _ShardEncoder(teacher, writer, image_size, batch_size)
                for raw in iter_raw_samples([url], stats):
                    try:
                        sample = decode_sample(raw)
                    except SkipSample as skip:
                        stats.skip(skip.reason, f"{raw['__key__']} @ {url}", skip.detail)
                        continue
                    encoder.add(raw, to_tensor(eval_view(sample.image, image_size)))
                encoder.flush()
            partial.rename(out / name)
            written.append(str(out / name))
            total += encoder.written
            stats.samples += encoder.written
    finally:
        teacher.train(was_training)
    return ProxyCache(written, total, image_size, stats)
