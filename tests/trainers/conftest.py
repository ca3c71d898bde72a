"""Shared helpers for the data-layer tests: real images and real tar shards written to tmp_path."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers.data.shards import tar_writer


class ShardKit:
    """Builds samples in the official layout (``png``/``jpg`` + ASCII ``cls``) and writes them to tars."""

    def __init__(self) -> None:
        from skimage import data

        self.photo = data.astronaut()  # 512x512 RGB

    def image(self, width: int, height: int, seed: int) -> Image.Image:
        """A crop of a real photo (varied content per seed), resized to width x height."""
        rng = np.random.default_rng(seed)
        side = int(rng.integers(96, 320))
        top, left = (int(v) for v in rng.integers(0, 512 - side, size=2))
        crop = Image.fromarray(self.photo[top:top + side, left:left + side])
        return crop.resize((width, height), Image.Resampling.BICUBIC)

    @staticmethod
    def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        return buffer.getvalue()

    def sample(self, key: str, image: Image.Image, label: int) -> dict:
        return {"__key__": key, "png": self.encode(image), "cls": str(label).encode("ascii")}

    @staticmethod
    def write(path: Path, samples: list[dict]) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tar_writer(path) as writer:
            for sample in samples:
                writer.write(sample)
        return str(path)


@pytest.fixture(scope="session")
def kit() -> ShardKit:
    return ShardKit()
