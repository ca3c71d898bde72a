"""core.revq.ReVQ: the release's key manifests, the latent path against the literal official port
(reference/revq_official.py), known answers (tokens, per-element standardisation, decode from ids), and strict
loading of ckpt.pth + YAML + preprocessor.pth, and of the DC-AE folder through diffusers' AutoencoderDC (a tiny one
with the release's layout, saved in its file format)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from core import CheckpointError, load_pretrained
from core.revq import REVQ_PRESETS, ReVQ, ReVQConfig
from core.revq_files import DCAE_SANA_LAYOUT, load_dcae, load_revq
from core.tokenizer import ReVQTokenizer, load_tokenizer
from reference.revq_official import official_revq_twin
from tests.core.conftest import perturbed

MANIFEST = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "tokenizer-state-dicts.json").read_text())
TINY = ReVQConfig(tokens=256, num_code=64, rectifier_width=64, rectifier_layers=2)


def tiny_dcae(seed: int = 0) -> nn.Module:
    """A real diffusers AutoencoderDC in the release's f32c32 layout (six stages, (B, 3, 256, 256) in [-1, 1] <->
    (B, 32, 8, 8)) at widths 8-32 and one layer a stage; random weights."""
    from diffusers import AutoencoderDC

    torch.manual_seed(seed)
    widths = (8, 8, 16, 16, 32, 32)
    return AutoencoderDC(**{**DCAE_SANA_LAYOUT, "attention_head_dim": 8, "encoder_block_out_channels": widths,
                            "decoder_block_out_channels": widths, "encoder_layers_per_block": (1,) * 6,
                            "decoder_layers_per_block": (1,) * 6}).eval()


def save_tiny_dcae(folder: Path, seed: int = 0) -> Path:
    """The tiny DC-AE in the release's file format (diffusers' save_pretrained: config.json + safetensors)."""
    tiny_dcae(seed).save_pretrained(str(folder))
    return folder


def build(cfg: ReVQConfig, seed: int) -> ReVQ:
    torch.manual_seed(seed)
    model = ReVQ(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # statistics shaped like the shipped file's: means near 0, std 1.7-5.9, per element
        model.preprocessor.mean.copy_(0.5 * torch.randn(cfg.latent_numel, generator=gen))
        model.preprocessor.std.copy_(1.7 + 4 * torch.rand(cfg.latent_numel, generator=gen))
    perturbed(model.decoder, seed, scale=0.05)
    return model.eval()


def raw_latents(model: ReVQ, batch: int, seed: int) -> torch.Tensor:
    noise = torch.randn(batch, model.config.latent_numel, generator=torch.Generator().manual_seed(seed))
    return (model.preprocessor.mean + model.preprocessor.std * noise).view(batch, *model.config.latent_shape)


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def tiny() -> ReVQ:
    return build(TINY, 0)


@pytest.mark.parametrize("preset", list(REVQ_PRESETS))
def test_release_shapes_match_the_official_manifest(preset):
    with torch.device("meta"):
        model = ReVQ(preset)
    key = "revq_" + preset.lower().replace("=", "")
    for part, module in (("quantizer", model.quantizer), ("decoder", model.decoder)):
        ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()}
        assert list(ours.items()) == list(MANIFEST[f"{key}_{part}"].items())
    assert sum(p.numel() for p in model.decoder.parameters()) == {
        "512T_NC=16384": 14_069_792, "256T_NC=65536": 72_973_344, "256T_NC=262144": 18_660_896}[preset]


@pytest.mark.parametrize("cfg", [TINY, ReVQConfig(num_code=256, rectifier_layers=1),
                                 ReVQConfig(tokens=256, num_code=128, rectifier_width=1024, rectifier_layers=1)],
                         ids=["tiny 256T", "512T widths", "256T-1024 widths"])
def test_latent_path_matches_the_official_port(cfg):
    """Identical ids; the rectified, de-standardised latent within float rounding (regrouped heads included)."""
    model = build(cfg, 1)
    ref = official_revq_twin(model)
    latent = raw_latents(model, 3, seed=2)
    ids = model.latent_to_ids(latent)
    ref_ids, ref_latent = ref.latent_round_trip(latent)
    assert ids.shape == (3, cfg.tokens) and ids.dtype == torch.int64
    assert torch.equal(ids, ref_ids)
    assert rel_err(model.ids_to_latent(ids), ref_latent) < 1e-5
    assert (ref_latent - latent).abs().mean() > 0.1  # the rectifier is not the identity here


def test_tokens_are_runs_along_one_row_of_one_channel():
    """Known answers of the Viewer (revq-official.md section 4): 512T token t = channel t // 16, row (t % 16) // 2,
    columns 4 (t % 2) .. +3; 256T token t = channel t // 8, row t % 8, all 8 columns."""
    index = torch.arange(2048.0).view(1, 32, 8, 8)  # value = c*64 + h*8 + w
    for cfg, checks in ((ReVQConfig(num_code=2, rectifier_layers=1), {0: (0, 0, 0), 1: (0, 0, 4), 511: (31, 7, 4)}),
                        (TINY, {0: (0, 0, 0), 1: (0, 1, 0), 255: (31, 7, 0)})):
        tokens = ReVQ(cfg)._tokens(index)
        assert tokens.shape == (1, cfg.tokens, cfg.code_dim)
        for t, (c, h, w) in checks.items():
            assert tokens[0, t].tolist() == index[0, c, h, w:w + cfg.code_dim].tolist()


def test_standardisation_is_per_element(tiny):
    latent = raw_latents(tiny, 2, seed=3)
    mean, std = tiny.preprocessor.mean.view(32, 8, 8), tiny.preprocessor.std.view(32, 8, 8)
    standardised = tiny.preprocessor(latent)
    assert torch.allclose(standardised, (latent - mean) / std, atol=1e-6)
    per_channel = (latent - mean.mean((1, 2), keepdim=True)) / std.mean((1, 2), keepdim=True)
    assert (standardised - per_channel).abs().max() > 0.1
    assert torch.allclose(tiny.preprocessor.inverse(standardised), latent, atol=1e-5)


def test_decode_from_ids_equals_decoding_the_quantised_latent(tiny):
    latent = raw_latents(tiny, 2, seed=4)
    ids = tiny.latent_to_ids(latent)
    quantised = tiny.quantized_latent(latent)
    assert torch.equal(tiny.ids_to_latent(ids), tiny.rectify(quantised))
    # Each id is its own position's nearest code (brute force over that position's codebook only).
    tokens = tiny._tokens(tiny.preprocessor(latent))
    brute = ((tokens[:, :, None, :] - tiny.quantizer.embeddings[None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(ids, brute)
    # The same id at two positions means two different codes.
    assert not torch.equal(tiny.quantizer.lookup(torch.zeros(1, 256, dtype=torch.long))[0, 0],
                           tiny.quantizer.lookup(torch.zeros(1, 256, dtype=torch.long))[0, 1])
    # Pixels: the DC-AE's decoder of that latent, mapped from [-1, 1] to [0, 1].
    dcae = tiny_dcae(3)
    tiny.attach_autoencoder(dcae)
    try:
        images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(5))
        ids = tiny.encode(images)
        assert torch.equal(ids, tiny.latent_to_ids(dcae.encode(images * 2 - 1).latent))
        with torch.no_grad():
            expected = ((dcae.decode(tiny.ids_to_latent(ids)).sample + 1) / 2).clamp(0, 1)
        assert torch.equal(tiny.decode_tokens(ids), expected)
    finally:
        tiny.attach_autoencoder(None)


YAML = """workspace: /path/to/workspace
name: {name}
log_path: ${{workspace}}/outputs/${{name}}
model:
  vae_path: ${{workspace}}/ckpt/dc_ae
  input_data_size: [32, 8, 8]
  quantizer:
    TYPE: vq
    num_code: {num_code}
    num_group: {tokens}
    tokens_per_data: {tokens}
  decoder:
    TYPE: dc_ae
    in_channels: 32
    latent_channels: 32
    attention_head_dim: 32
    block_type: [EfficientViTBlock]
    block_out_channels: [{width}]
    layers_per_block: [{layers}]
    qkv_multiscales: [[5]]
    norm_type: rms_norm
    act_fn: silu
    upsample_block_type: interpolate
train:
  lr: 0.01
"""


def write_release(folder: Path, model: ReVQ, yaml_cfg: ReVQConfig | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"quantizer": model.quantizer.state_dict(), "decoder": model.decoder.state_dict(),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}, "epoch": 7}, folder / "ckpt.pth")
    torch.save(model.preprocessor.state_dict(), folder / "preprocessor.pth")
    c = yaml_cfg or model.config
    (folder / "custom.yaml").write_text(YAML.format(name="custom", num_code=c.num_code, tokens=c.tokens,
                                                    width=c.rectifier_width, layers=c.rectifier_layers))
    return folder


def test_release_folder_loads_strictly_and_tokenizes(tmp_path, tiny):
    folder = write_release(tmp_path / "revq", tiny)
    loaded = load_pretrained(folder)
    assert isinstance(loaded, ReVQ) and loaded.config == TINY
    for name, tensor in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    save_tiny_dcae(folder / "dc_ae", seed=6)  # found beside ckpt.pth, as the official workspace keeps it
    tok = load_tokenizer(folder)
    assert isinstance(tok, ReVQTokenizer)
    assert (tok.info.family, tok.info.num_tokens, tok.info.codebook_size, tok.info.max_steps) == ("revq", 256, 64, 1)
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(7))
    ids = tok.encode(images)
    assert ids.shape == (2, 256)
    out = tok.decode(ids)
    assert out.shape == (2, 3, 256, 256) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert len(tok.decode_trace(ids)) == 1
    # Known answer: the pixels diffusers' own loader of that folder gives, through ReVQ's latent path.
    from diffusers import AutoencoderDC

    reference = AutoencoderDC.from_pretrained(str(folder / "dc_ae"), local_files_only=True).eval()
    with torch.no_grad():
        assert torch.equal(ids, tiny.latent_to_ids(reference.encode(images * 2 - 1).latent))
        assert torch.equal(out, ((reference.decode(tiny.ids_to_latent(ids)).sample + 1) / 2).clamp(0, 1))
    # The ckpt.pth file itself works too (YAML and preprocessor found beside it).
    assert load_revq(folder / "ckpt.pth").config == TINY


def test_wrong_files_are_refused_naming_keys(tmp_path, tiny):
    folder = write_release(tmp_path / "a", tiny)
    ckpt = torch.load(folder / "ckpt.pth", weights_only=True)
    ckpt["decoder"].pop("up_blocks.0.1.attn.to_k.weight")
    ckpt["decoder"]["up_blocks.0.1.attn.to_qkv.weight"] = torch.zeros(3)
    torch.save(ckpt, folder / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"ckpt.pth \['decoder'\] does not fit ReVQ's Rectifier: 1 missing key\(s\): "
                                              r"up_blocks.0.1.attn.to_k.weight; 1 unexpected key\(s\): up_blocks.0.1.attn.to_qkv.weight"):
        load_pretrained(folder)

    # A 256T checkpoint with a 512T config: the codebook shapes are named.
    folder = write_release(tmp_path / "b", tiny, yaml_cfg=ReVQConfig(num_code=64, rectifier_width=64, rectifier_layers=2))
    with pytest.raises(CheckpointError, match=r"\['quantizer'\] .*embeddings checkpoint \(256, 64, 8\) vs model \(512, 64, 4\)"):
        load_pretrained(folder)

    folder = write_release(tmp_path / "c", tiny)
    (folder / "preprocessor.pth").unlink()
    with pytest.raises(CheckpointError, match=r"preprocessor.pth: ReVQ needs its latent statistics file"):
        load_pretrained(folder)

    folder = write_release(tmp_path / "d", tiny)
    torch.save({"model": tiny.quantizer.state_dict()}, folder / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"holds 'quantizer' and 'decoder' state dicts; found \['model'\]"):
        load_pretrained(folder)

    folder = write_release(tmp_path / "e", tiny)
    text = (folder / "custom.yaml").read_text().replace("num_group: 256", "num_group: 128")
    (folder / "custom.yaml").write_text(text)
    with pytest.raises(CheckpointError, match=r"model.quantizer.num_group: only one codebook per token position"):
        load_pretrained(folder)


def test_checkpoint_without_yaml_is_matched_to_a_released_config(tmp_path, tiny, monkeypatch):
    folder = write_release(tmp_path / "r", tiny)
    (folder / "custom.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"codebook \(256, 64, 8\) with rectifier width 64 is none of the released"):
        load_pretrained(folder)
    monkeypatch.setitem(REVQ_PRESETS, "tiny", TINY)  # stands in for a release shape (the real ones are 128 MiB+)
    assert load_pretrained(folder).config == TINY


def test_missing_dcae_is_named(tmp_path, tiny):
    folder = write_release(tmp_path / "revq", tiny)
    with pytest.raises(CheckpointError, match=r"ReVQ needs its DC-AE: download mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers into .*dc_ae"):
        load_tokenizer(folder)
    with pytest.raises(RuntimeError, match="ReVQ needs its DC-AE"):
        load_pretrained(folder).encode(torch.rand(1, 3, 256, 256))
    with pytest.raises(CheckpointError, match=r"no DC-AE here; download mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"):
        load_dcae(tmp_path / "nowhere")


def test_wrong_dcae_folders_are_refused_naming_keys(tmp_path):
    """diffusers' from_pretrained fills weights missing from the file with a random init and only warns; ours
    refuses, naming the keys, as for every other checkpoint."""
    good = save_tiny_dcae(tmp_path / "good")
    config = json.loads((good / "config.json").read_text())

    def variant(name: str, **changes) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**config, **changes}))
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(
            (good / "diffusion_pytorch_model.safetensors").read_bytes())
        return folder

    deeper = variant("deeper", decoder_layers_per_block=[1, 1, 1, 1, 1, 2])
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model.safetensors does not fit diffusers' "
                                              r"AutoencoderDC: \d+ missing key\(s\): decoder.up_blocks.5.1."):
        load_dcae(deeper)
    wider = variant("wider", decoder_block_out_channels=[8, 8, 16, 16, 32, 64])
    with pytest.raises(CheckpointError, match=r"wrong shape\(s\): decoder.conv_in.bias checkpoint \(32,\) vs model \(64,\)"):
        load_dcae(wider)
    not_dcae = variant("not-dcae", encoder_block_types="NoSuchBlock")
    with pytest.raises(CheckpointError, match=r"not-dcae/config.json: not a diffusers AutoencoderDC config"):
        load_dcae(not_dcae)
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"a DC-AE config.json but no weights \(diffusion_pytorch_model.safetensors "
                                              r"or diffusion_pytorch_model.bin\); download them from mit-han-lab/"):
        load_dcae(tmp_path / "no-weights")
    from safetensors.torch import load_file, save_file

    state = load_file(str(good / "diffusion_pytorch_model.safetensors"))
    state["decoder.conv_in.bias"][3] = float("nan")
    save_file(state, str(variant("nan") / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) contain NaN or Inf, e.g. \['decoder.conv_in.bias'\]"):
        load_dcae(tmp_path / "nan")
    # Sharded weights (an .index.json naming the files, as diffusers saves big models) load like one file.
    sharded = tmp_path / "sharded"
    tiny_dcae(0).save_pretrained(str(sharded), max_shard_size="200KB")
    assert (sharded / "diffusion_pytorch_model.safetensors.index.json").is_file()
    model = load_dcae(sharded)
    for name, tensor in load_dcae(good).state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_dcae_by_hub_name_for_online_users(tmp_path, monkeypatch):
    """A hub id that is no folder here is fetched (here: a snapshot stand-in returning a saved folder), then loaded
    as strictly as a local folder; offline the refusal names the repo and says to pass a folder."""
    import huggingface_hub

    good = save_tiny_dcae(tmp_path / "snapshot")
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda name: asked.append(name) or str(good))
    model = load_dcae("mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers")
    assert asked == ["mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"]
    assert torch.equal(model.state_dict()["decoder.conv_in.bias"], load_dcae(good).state_dict()["decoder.conv_in.bias"])
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"'mit-han-lab/no-such-dcae' is neither a local path nor a reachable "
                                              r"Hugging Face hub repo .*Offline, download the repo elsewhere"):
        load_dcae("mit-han-lab/no-such-dcae")
