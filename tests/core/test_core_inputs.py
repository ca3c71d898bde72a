"""Bad tensors given to encode/decode raise InputError naming the argument and what was expected."""
from __future__ import annotations

import pytest
import torch

from core import InputError


@pytest.mark.parametrize("images, message", [
    (torch.rand(1, 3, 32, 32), r"images: expected shape \(B, 3, 64, 64\), got \(1, 3, 32, 32\)"),
    (torch.rand(1, 1, 64, 64), r"images: expected shape \(B, 3, 64, 64\), got \(1, 1, 64, 64\)"),
    (torch.rand(3, 64, 64), r"images: expected shape \(B, 3, 64, 64\), got \(3, 64, 64\)"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), r"images: expected a float tensor in \[0, 1\], got dtype torch.uint8"),
    (torch.rand(1, 3, 64, 64) * 255, r"images: values must lie in \[0, 1\] \(got min .*x / 255"),
    (torch.rand(1, 3, 64, 64) * 2 - 1, r"images: values must lie in \[0, 1\].*\(x \+ 1\) / 2"),
    (torch.full((1, 3, 64, 64), float("nan")), "images: contain NaN or Inf"),
    (torch.rand(1, 3, 64, 64).numpy(), "images: expected a torch.Tensor, got ndarray"),
])
def test_bad_images(tiny_model, images, message):
    with pytest.raises(InputError, match=message):
        tiny_model.encode(images)


@pytest.mark.parametrize("ids, message", [
    (torch.full((1, 64), 1024), r"token ids: values must lie in \[0, 1024\), got \[1024, 1024\]"),
    (torch.full((1, 64), -1), r"token ids: values must lie in \[0, 1024\), got \[-1, -1\]"),
    (torch.zeros(1, 64), "token ids: expected an integer tensor, got torch.float32"),
    (torch.zeros(1, 64, dtype=torch.bool), "token ids: expected an integer tensor, got torch.bool"),
    (torch.zeros(1, 32, dtype=torch.long), r"token ids: expected shape \(B, 64\) or \(B, 1, 64\), got \(1, 32\)"),
    (torch.zeros(1, 2, 64, dtype=torch.long), r"token ids: expected shape .*got \(1, 2, 64\)"),
    ([0] * 64, "token ids: expected an integer tensor, got list"),
])
def test_bad_token_ids(tiny_model, ids, message):
    with pytest.raises(InputError, match=message):
        tiny_model.decode_tokens(ids, num_steps=1)
    with pytest.raises(InputError, match=message):
        tiny_model.decode_steps(ids, num_steps=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_steps": 0}, r"num_steps: must be in 1..32, got 0"),
    ({"num_steps": 33}, r"num_steps: must be in 1..32, got 33"),
    ({"temperature": -0.5}, r"temperature: must be >= 0, got -0.5"),
])
def test_bad_decode_settings(tiny_model, kwargs, message):
    ids = torch.zeros(1, 64, dtype=torch.long)
    with pytest.raises(InputError, match=message):
        tiny_model.decode_tokens(ids, **kwargs)


def test_valid_edge_inputs_are_accepted(tiny_model):
    z_q, info = tiny_model.encode(torch.zeros(1, 3, 64, 64, dtype=torch.float64))  # any float dtype, range edges
    assert info["min_encoding_indices"].shape == (1, 1, 64)
    ids = torch.full((1, 1, 64), 1023, dtype=torch.int32)  # (B, 1, N), int32, largest id
    assert tiny_model.decode_tokens(ids, num_steps=1).shape == (1, 3, 64, 64)
