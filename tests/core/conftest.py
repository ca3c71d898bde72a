"""Builders shared by the core tests: small SFTok variants, their official-layout twins, manifests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core import SFTok, VitConfig, create_config
from core.config import SFTokConfig
from reference.official_modules import OfficialSFTok, official_twin  # noqa: F401

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "official-state-dicts.json"


def perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> torch.nn.Module:
    """Add small noise to every float tensor, so zero-initialised biases and unit norms are exercised too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(scale * torch.randn(tensor.shape, generator=gen))
    return model.eval()


def build_sftok(cfg: SFTokConfig, seed: int = 0) -> SFTok:
    torch.manual_seed(seed)
    return perturbed(SFTok(cfg), seed)


def b_width(depth: int = 2, decoder: VitConfig | None = None, pixel_head: bool = False) -> SFTokConfig:
    """SFTok-B shapes (256 px, width 768, 8192 codes, 16x16 proxy grid) with fewer layers."""
    return create_config("B", encoder=VitConfig(768, depth, 12), decoder=decoder or VitConfig(768, depth, 12),
                         has_pixel_head=pixel_head)


def l_width(depth: int = 2) -> SFTokConfig:
    """SFTok-L decoder width/heads (1024/16) with fewer layers."""
    return b_width(depth, decoder=VitConfig(1024, depth, 16))


@pytest.fixture(scope="session")
def manifest() -> dict[str, dict[str, list]]:
    return json.loads(MANIFEST_PATH.read_text())


@pytest.fixture(scope="session")
def tiny_pair() -> tuple[SFTok, OfficialSFTok]:
    model = build_sftok(create_config("tiny"))
    return model, official_twin(model)


@pytest.fixture(scope="session")
def tiny_model(tiny_pair) -> SFTok:
    return tiny_pair[0]


@pytest.fixture(scope="session")
def tiny_ids(tiny_model) -> torch.Tensor:
    """Token ids (2, 1, 64) of two random 64 px images."""
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return tiny_model.encode(images)[1]["min_encoding_indices"]
