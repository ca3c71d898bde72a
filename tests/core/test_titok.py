"""core.titok.TiTok: the release's key manifest, strict loading of every file kind, and equivalence with the
literal official-layout port (reference/titok_official.py) holding the same random weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core import CheckpointError, load_pretrained, save_pretrained
from core.checkpoint import compare_state_dict
from core.config import VitConfig
from core.presets import TINY_TEACHER
from core.tokenizer import TiTokTokenizer, as_tokenizer, load_tokenizer
from core.titok import TITOK_PRESETS, TiTok, TiTokConfig
from reference.titok_official import official_titok_twin
from tests.core.conftest import perturbed

MANIFEST = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "tokenizer-state-dicts.json").read_text())
TINY = TiTokConfig(image_size=64, patch_size=4, encoder=VitConfig(64, 2, 4), decoder=VitConfig(96, 2, 4),
                   num_latent_tokens=16, token_size=8, codebook_size=64, teacher=TINY_TEACHER)


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.detach().float(), ref.detach().float()
    return float((ours - ref).abs().max() / ref.abs().max())


def build(cfg: TiTokConfig, seed: int) -> TiTok:
    torch.manual_seed(seed)
    return perturbed(TiTok(cfg), seed)


@pytest.fixture(scope="module")
def tiny() -> TiTok:
    return build(TINY, 0)


def images(size: int, batch: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset", ["titok_b64", "titok_l32"])
def test_release_shapes_match_the_official_manifest(preset):
    """The real B-64 / L-32 module trees (built on the meta device): every key, shape, dtype and the order."""
    with torch.device("meta"):
        model = TiTok(preset)
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}
    expected = MANIFEST[preset]
    assert list(ours) == list(expected)
    assert ours == expected
    assert len(ours) == {"titok_b64": 404, "titok_l32": 692}[preset]
    # The manifest's own tensors (meta) fit the strict comparison; one renamed key is named both ways.
    state = {k: torch.empty(shape, device="meta") for k, (shape, _) in expected.items()}
    assert compare_state_dict(model, state).ok
    state["decoder.mask_tokens"] = state.pop("decoder.mask_token")
    report = compare_state_dict(model, state)
    assert report.missing == ["decoder.mask_token"] and report.unexpected == ["decoder.mask_tokens"]


def test_encode_and_decode_match_the_official_port(tiny):
    ref = official_titok_twin(tiny)
    x = images(64, 3, seed=1)
    z_q, info = tiny.encode(x)
    z_ref, info_ref = ref.encode(x)
    assert info["min_encoding_indices"].shape == (3, 1, 16) and info["min_encoding_indices"].dtype == torch.int64
    assert torch.equal(info["min_encoding_indices"], info_ref["min_encoding_indices"])
    assert rel_err(z_q, z_ref) < 1e-6
    with torch.no_grad():
        logits, logits_ref = tiny.proxy_logits(z_q), ref.decoder(z_ref)  # ours (B, S, V), official (B, V, 16, 16)
    assert logits_ref.shape == (3, 256, 16, 16)
    assert rel_err(logits, logits_ref.flatten(2).transpose(1, 2)) < 1e-5
    out, expected = tiny.decode_tokens(info["min_encoding_indices"]), ref.decode_tokens(info_ref["min_encoding_indices"])
    assert out.shape == (3, 3, 64, 64)
    assert rel_err(out, expected.clamp(0, 1)) < 1e-4  # official output is unclamped
    assert float(expected.min()) < 0 or float(expected.max()) > 1 or torch.equal(out, expected)


@pytest.mark.parametrize("widths", [(768, 12, 64), (1024, 16, 32)], ids=["B-64 widths", "L-32 widths"])
def test_release_widths_match_the_official_port(widths):
    """Release widths, heads, tokens and codebook at 256 px, one layer each to stay fast: identical ids and
    proxy logits. (The f16 pixel head is the SFTok one, checked in test_core_equivalence.)"""
    width, heads, tokens = widths
    vit = VitConfig(width, 1, heads)
    model = build(TiTokConfig(encoder=vit, decoder=vit, num_latent_tokens=tokens, has_pixel_head=False), seed=2)
    ref = official_titok_twin(model)
    x = images(256, 2, seed=3)
    z_q, info = model.encode(x)
    z_ref, info_ref = ref.encode(x)
    assert info["min_encoding_indices"].shape == (2, 1, tokens)
    assert torch.equal(info["min_encoding_indices"], info_ref["min_encoding_indices"])
    with torch.no_grad():
        logits, expected = model.proxy_logits(z_q), ref.decoder(z_ref)
    assert rel_err(logits, expected.flatten(2).transpose(1, 2)) < 1e-5


def test_legacy_reshape_is_a_memory_reinterpretation(tiny):
    """Known answer: with conv_out selecting channel j, z[b, j, 0, p] is element j*N + p of the flattened
    (N, W) post-LN latents (token (jN+p) // W, feature (jN+p) % W), not feature j of token p."""
    model = build(TINY, 5)
    n, c = TINY.num_latent_tokens, TINY.token_size
    with torch.no_grad():
        model.encoder.conv_out.weight.zero_()
        model.encoder.conv_out.bias.zero_()
        for j in range(c):
            model.encoder.conv_out.weight[j, j] = 1.0
    seen = {}
    model.encoder.ln_post.register_forward_hook(lambda _m, _i, out: seen.update(post=out))
    x = images(64, 2, seed=6)
    with torch.no_grad():
        z = model.encoder(x, model.latent_tokens)
    flat = seen["post"].reshape(2, -1)  # (B, N*W), row-major
    assert z.shape == (2, c, 1, n)
    for j in range(c):
        assert torch.allclose(z[:, j, 0, :], flat[:, j * n:(j + 1) * n], atol=1e-6)
    assert not torch.allclose(z[:, :, 0, :], seen["post"][:, :, :c].transpose(1, 2), atol=1e-3)


def test_decode_is_soft_and_ids_round_trip(tiny):
    """Encoding the codewords' own decode is not required to round-trip, but decode_tokens(ids) equals decoding
    the straight-through z_q within float rounding, and the soft mixture differs from argmax rendering."""
    x = images(64, 2, seed=7)
    z_q, info = tiny.encode(x)
    from_ids = tiny.decode_tokens(info["min_encoding_indices"])
    assert rel_err(tiny.decode(z_q), from_ids) < 1e-5
    assert torch.equal(tiny.decode_tokens(info["min_encoding_indices"][:, 0]), from_ids)  # (B, N) too
    with torch.no_grad():
        hard = tiny.pixel_quantize.get_codebook_entry(tiny.proxy_logits(z_q).argmax(-1))
        argmax_render = tiny.pixel_decoder(hard).clamp(0, 1)
    assert (argmax_render - from_ids).abs().max() > 1e-3


def test_official_hub_folder_loads_strictly(tmp_path):
    """A yucornetto/tokenizer_titok_* style folder: the official config.json (unresolved interpolations kept)
    + model.safetensors, no model_type of ours: recognised by its keys, built from model.vq_model."""
    cfg = TiTokConfig(encoder=VitConfig(128, 4, 4), decoder=VitConfig(128, 4, 4), num_latent_tokens=32, has_pixel_head=False)
    model = build(cfg, 8)
    official = {"experiment": {"tokenizer_checkpoint": "tokenizer_titok_x.bin"},
                "model": {"vq_model": {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
                                       "vit_enc_model_size": "tiny", "vit_dec_model_size": "tiny", "vit_enc_patch_size": 16,
                                       "vit_dec_patch_size": 16, "num_latent_tokens": 32, "finetune_decoder": False},
                          "generator": {"image_seq_len": "${model.vq_model.num_latent_tokens}"}},
                "dataset": {"preprocessing": {"crop_size": 256}}}
    (tmp_path / "config.json").write_text(json.dumps(official))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, TiTok) and loaded.config == cfg
    x = images(256, 1, seed=9)
    assert torch.equal(loaded.encode(x)[1]["min_encoding_indices"], model.encode(x)[1]["min_encoding_indices"])
    # The same folder whose config names other sizes is refused with the mismatched shapes named.
    official["model"]["vq_model"]["num_latent_tokens"] = 64
    (tmp_path / "config.json").write_text(json.dumps(official))
    with pytest.raises(CheckpointError, match=r"latent_tokens checkpoint \(32, 128\) vs model \(64, 128\)"):
        load_pretrained(tmp_path)
    official["model"]["vq_model"]["is_legacy"] = False
    (tmp_path / "config.json").write_text(json.dumps(official))
    with pytest.raises(CheckpointError, match="is_legacy"):
        load_pretrained(tmp_path)
    official["model"]["vq_model"].update(is_legacy=True, token_size="${model.nowhere}")
    (tmp_path / "config.json").write_text(json.dumps(official))
    with pytest.raises(CheckpointError, match=r"model.vq_model.token_size: cannot be resolved"):
        load_pretrained(tmp_path)


def test_bare_release_file_is_recognised_by_its_shapes(tmp_path, tiny, monkeypatch):
    """tokenizer_titok_{b64,l32}.bin need no config: latent_tokens names the preset, the strict load checks the
    rest. (A tiny preset stands in for the 800 MB release shapes.)"""
    monkeypatch.setitem(TITOK_PRESETS, "titok_tiny", TINY)
    path = tmp_path / "tokenizer_titok_tiny.bin"
    torch.save(tiny.state_dict(), path)
    loaded = load_pretrained(path)
    assert isinstance(loaded, TiTok) and loaded.config == TINY
    x = images(64, 1, seed=10)
    assert torch.equal(loaded.encode(x)[1]["min_encoding_indices"], tiny.encode(x)[1]["min_encoding_indices"])

    state = dict(tiny.state_dict())
    state.pop("pixel_decoder.conv_out.bias")
    state["decoder.extra_head.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): pixel_decoder.conv_out.bias; "
                                              r"1 unexpected key\(s\): decoder.extra_head.weight"):
        load_pretrained(path)
    state = dict(tiny.state_dict())
    state["latent_tokens"] = torch.zeros(20, 64)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"latent_tokens: shape \(20, 64\) is none of the released TiTok"):
        load_pretrained(path)


def test_tokenizer_adapter_decodes_in_one_step(tmp_path, tiny):
    save_pretrained(tiny, tmp_path / "titok")
    tok = load_tokenizer(tmp_path / "titok")
    assert isinstance(tok, TiTokTokenizer) and isinstance(as_tokenizer(tiny), TiTokTokenizer)
    assert (tok.info.family, tok.info.num_tokens, tok.info.codebook_size, tok.info.max_steps) == ("titok", 16, 64, 1)
    x = images(64, 2, seed=11)
    ids = tok.encode(x)
    assert ids.shape == (2, 16) and torch.equal(ids, tiny.encode(x)[1]["min_encoding_indices"][:, 0])
    out = tok.decode(ids)
    assert torch.equal(out, tiny.decode_tokens(ids)) and 0 <= float(out.min()) and float(out.max()) <= 1
    trace = tok.decode_trace(ids)
    assert len(trace) == 1 and torch.equal(trace[0].preview, out)
    with pytest.raises(ValueError, match=r"titok decodes in 1..1 steps, got 8"):
        tok.decode(ids, num_steps=8)


def test_stage1_titok_needs_the_teacher(tmp_path):
    model = build(TINY.__class__(**{**TINY.__dict__, "has_pixel_head": False}), 12)
    save_pretrained(model, tmp_path / "s1")
    with pytest.raises(CheckpointError, match="stage-1 TiTok has no pixel head; pass the MaskGIT-VQGAN teacher"):
        load_tokenizer(tmp_path / "s1")
