"""Initialisation as the official model does it, and encodings that do not depend on the batch."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analysis.model_mi import sftok_mi_inputs
from core import SFTok, create_config
from core.config import ConfigError

from .conftest import perturbed


@torch.no_grad()
def test_official_init_of_encoder_and_decoder():
    torch.manual_seed(0)
    model = SFTok(create_config("tiny"))
    table = model.decoder.learnable_embedding.weight
    assert float(table.std()) == pytest.approx(0.02, rel=0.1)  # PyTorch's default would be 1.0
    assert float(model.encoder.patch_embed.weight.std()) == pytest.approx(0.02, rel=0.1)
    for part in (model.encoder, model.decoder):
        for module in part.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                assert float(module.weight.std()) == pytest.approx(0.02, rel=0.25), module
                assert not module.bias.any()
    # what the official init leaves alone: bare parameters and the quantizer's identity projection
    assert float(model.latent_tokens.std()) == pytest.approx(96 ** -0.5, rel=0.15)
    assert torch.equal(model.quantize.shared_linear.weight, torch.eye(16))
    positional = model.decoder.learnable_embedding_positional_embedding
    assert float(positional.std()) == pytest.approx(128 ** -0.5, rel=0.15)


@torch.no_grad()
def test_pytorch_init_keeps_torch_defaults_and_bad_names_are_rejected():
    torch.manual_seed(0)
    model = SFTok(create_config("tiny", weight_init="pytorch"))
    assert float(model.decoder.learnable_embedding.weight.std()) == pytest.approx(1.0, rel=0.1)
    assert model.encoder.patch_embed.bias.abs().sum() > 0
    with pytest.raises(ConfigError, match="weight_init"):
        create_config("tiny", weight_init="xavier")


def test_per_image_encoding_is_each_image_alone():
    torch.manual_seed(1)
    model = perturbed(SFTok(create_config("tiny")), seed=1)
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        per_image = model.encode(images, per_image=True)[1]["min_encoding_indices"]
        alone = torch.cat([model.encode(images[i:i + 1])[1]["min_encoding_indices"] for i in range(4)])
        joint = model.encode(images)[1]["min_encoding_indices"]
    assert torch.equal(per_image, alone)
    assert not torch.equal(joint, alone)  # Sinkhorn over 256 vectors balances differently than over 64
    # so an analysis measures the same tokens for an image whatever the number of images measured
    two = sftok_mi_inputs(model, images[:2]).token_ids
    four = sftok_mi_inputs(model, images).token_ids
    assert torch.equal(two, four[:2])


def test_sincos_grid_rows_encode_row_and_column():
    from core.decoder import sincos_grid

    grid = sincos_grid(4, 8)  # 16 slots; channels: sin/cos of the row, then sin/cos of the column (2 frequencies each)
    assert grid.shape == (16, 8)
    assert torch.allclose(grid[5], torch.tensor([math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)] * 2))
    assert torch.allclose(grid[:, 0].reshape(4, 4)[:, 0], torch.sin(torch.arange(4.0)))  # slot (r, 0): sin(r)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_grid(4, 6)
