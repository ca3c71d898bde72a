"""Helpers shared by the suites that launch the app: a free port, a tiny model, sample photos."""
from __future__ import annotations

import socket
from pathlib import Path

import torch
from PIL import Image

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A random-init tiny SFTok with pixel head, saved as a model folder.

    PyTorch's default init, not the official N(0, 0.02): an untrained encoder with such small weights gives
    different pictures nearly the same token ids, and the app tests need pictures told apart.
    """
    from core import SFTok, create_config, save_pretrained

    torch.manual_seed(seed)
    return save_pretrained(SFTok(create_config("tiny", weight_init="pytorch")).eval(), folder)


def write_sample_photos(folder: Path) -> Path:
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    return folder


#: The Reconstruct screen's outputs, in the order its API endpoints return them.
REC_OUTPUTS = ("compare", "status", "tokens", "scrubber", "curve", "note", "gif")


def named(result) -> dict:
    """A Reconstruct endpoint's result by output name."""
    return dict(zip(REC_OUTPUTS, result))
