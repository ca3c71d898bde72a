"""Small real webdataset shards of real photo crops, for trainer tests."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image


def photo_crops(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        src = sources[i % len(sources)]
        side = int(rng.integers(size, min(src.shape[:2]) // 2))
        y = int(rng.integers(0, src.shape[0] - side))
        x = int(rng.integers(0, src.shape[1] - side))
        crop = Image.fromarray(src[y:y + side, x:x + side]).resize((size, size), Image.BICUBIC)
        crops.append(np.asarray(crop))
    return crops


def write_shards(out_dir: Path, prefix: str, count: int, size: int = 64, per_shard: int = 32, seed: int = 0) -> str:
    """Write ``count`` PNG crops with labels 0..3 and return a brace pattern naming the shards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    crops = photo_crops(count, size, seed)
    num_shards = (count + per_shard - 1) // per_shard
    for s in range(num_shards):
        with wds.TarWriter(str(out_dir / f"{prefix}-{s:06d}.tar")) as writer:
            for i in range(s * per_shard, min(count, (s + 1) * per_shard)):
                buf = io.BytesIO()
                Image.fromarray(crops[i]).save(buf, format="PNG")
                writer.write({"__key__": f"{i:08d}", "png": buf.getvalue(), "cls": str(i % 4).encode()})
    return str(out_dir / f"{prefix}-{{{0:06d}..{num_shards - 1:06d}}}.tar")
