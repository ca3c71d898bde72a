"""Official checkpoints fit our modules key for key: manifests (tests/fixtures) -> strict loads.

The manifests list every key, shape and dtype of the official state dicts (reference section 2.8).
Big models are built on the meta device and materialised without initialisation, so the tests
check real strict loads of random tensors without paying for B/L/generator initialisers.
"""
from __future__ import annotations

import math

import pytest
import torch

from core import (CheckpointError, GeneratorConfig, MaskGITGenerator, MaskGITVQGAN, SFTok, TeacherConfig,
                  create_config, load_weights)

DTYPES = {"float32": torch.float32, "int64": torch.int64}


def random_state(entries: dict[str, list], seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of the listed shapes and dtypes, each filled with its own random value (integers: 0).

    One value per tensor (not per element) keeps 425M-element state dicts cheap to build while
    still telling every tensor apart after loading.
    """
    values = torch.rand(len(entries), generator=torch.Generator().manual_seed(seed)).tolist()
    state = {}
    for value, (key, (shape, dtype)) in zip(values, entries.items()):
        fill = value if DTYPES[dtype].is_floating_point else 0
        state[key] = torch.full(shape, fill, dtype=DTYPES[dtype])
    return state


def uninitialised(build) -> torch.nn.Module:
    with torch.device("meta"):
        model = build()
    return model.to_empty(device="cpu")


@pytest.mark.parametrize("variant, preset, pixel_head, keys, elements", [
    ("sftok_b", "B", True, 407, 205_845_316),
    ("sftok_l", "L", True, 551, 424_896_836),
    ("sftok_b_stage12", "B", False, 318, None),
    ("sftok_l_stage12", "L", False, 462, None),
])
def test_official_sftok_state_dicts_strict_load(manifest, variant, preset, pixel_head, keys, elements):
    entries = manifest[variant]
    assert len(entries) == keys
    if elements is not None:
        assert sum(math.prod(shape) for shape, _ in entries.values()) == elements
    cfg = create_config(preset, has_pixel_head=pixel_head)
    model = uninitialised(lambda: SFTok(cfg))
    ours = model.state_dict()
    assert list(ours) == list(entries)  # same keys in the same order
    assert {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in ours.items()} == entries
    state = random_state(entries)
    report = load_weights(model, state, strict=True, source=variant)
    assert report.ok
    loaded = model.state_dict()
    for probe in ("latent_tokens", "decoder.transformer.0.attn.in_proj_weight", "quantize.embedding",
                  "decoder.ffn.2.bias", "encoder.conv_out.weight"):
        assert torch.equal(loaded[probe], state[probe])


def test_sftok_b_parameter_groups(manifest):
    """Per-prefix element counts of SFTok-B (reference section 2.8 table)."""
    groups: dict[str, int] = {}
    for key, (shape, _) in manifest["sftok_b"].items():
        prefix = key.split(".")[0]
        groups[prefix] = groups.get(prefix, 0) + math.prod(shape)
    assert groups == {"latent_tokens": 49_152, "encoder": 85_920_032, "decoder": 88_872_448, "quantize": 263_201,
                      "pixel_quantize": 262_144, "pixel_decoder": 30_478_339}
    model = uninitialised(lambda: SFTok(create_config("B")))
    assert sum(p.numel() for p in model.decoder.parameters()) == 88_872_448


def test_teacher_state_dict_strict_load(manifest):
    entries = manifest["maskgit_vqgan"]
    assert len(entries) == 168
    model = uninitialised(lambda: MaskGITVQGAN(TeacherConfig()))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {k: s for k, (s, _) in entries.items()}
    assert load_weights(model, random_state(entries), strict=True).ok


def test_generator_default_config_key_count():
    model = uninitialised(lambda: MaskGITGenerator(GeneratorConfig()))
    state = model.state_dict()
    assert len(state) == 391
    assert sum(v.numel() for v in state.values()) == 183_522_560
    assert tuple(state["model.embeddings.word_embeddings.weight"].shape) == (9194, 768)
    assert tuple(state["model.lm_head.weight"].shape) == (8192, 768)
    # Old transformers checkpoints carry a position_ids buffer: dropped on load.
    legacy = {k: torch.zeros_like(v) for k, v in state.items()}
    legacy["model.embeddings.position_ids"] = torch.arange(65)[None]
    assert load_weights(model, legacy, strict=True).ok


def test_old_positional_embedding_key_name_is_accepted(tiny_model):
    state = dict(tiny_model.state_dict())
    value = state.pop("decoder.learnable_embedding_positional_embedding")
    state["decoder.embedding_positional_embedding"] = value * 0 + 0.5
    fresh = SFTok(create_config("tiny"))
    assert load_weights(fresh, state, strict=True).ok
    assert torch.equal(fresh.decoder.learnable_embedding_positional_embedding, torch.full_like(value, 0.5))


def test_stage12_checkpoint_does_not_fit_stage3_model(manifest):
    """A stage-1/2 state dict lacks the pixel head: strict loading names the missing groups."""
    model = uninitialised(lambda: SFTok(create_config("B")))
    with pytest.raises(CheckpointError, match=r"89 missing key\(s\): pixel_decoder\.") as err:
        load_weights(model, random_state(manifest["sftok_b_stage12"]), strict=True)
    assert "pixel_quantize.embedding.weight" not in str(err.value) or "more" in str(err.value)
