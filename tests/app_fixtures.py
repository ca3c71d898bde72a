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


def save_tiny_titok(folder: Path, seed: int = 0) -> Path:
    """A random-init one-step TiTok with pixel head at the tiny SFTok's size (64 px, 32 tokens of a 4096-code
    book: 384 bits), saved as a model folder: the other side of an A/B comparison."""
    from core import save_pretrained
    from core.config import VitConfig
    from core.presets import TINY_TEACHER
    from core.titok import TiTok, TiTokConfig

    torch.manual_seed(seed)
    cfg = TiTokConfig(image_size=64, patch_size=4, encoder=VitConfig(64, 2, 4), decoder=VitConfig(64, 2, 4),
                      num_latent_tokens=32, token_size=8, codebook_size=4096, teacher=TINY_TEACHER)
    return save_pretrained(TiTok(cfg).eval(), folder)


def save_tiny_teacher(folder: Path, seed: int = 0) -> Path:
    """A random-init MaskGIT-VQGAN of the tiny SFTok's teacher shape (16 x 16 codes of 256 at 64 px), saved."""
    from core import MaskGITVQGAN, save_pretrained
    from core.presets import TINY_TEACHER

    torch.manual_seed(seed)
    return save_pretrained(MaskGITVQGAN(TINY_TEACHER).eval(), folder)
