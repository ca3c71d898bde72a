"""Checkpoint I/O: clear CheckpointErrors for every way a file can be wrong, safe unpickling,
save/load round trips, and no hang when a hub id is asked for offline."""
from __future__ import annotations

import json
import pickle
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core import (CheckpointError, GENERATOR_PRESETS, MaskGITGenerator, MaskGITVQGAN, SFTok, create_config,
                  load_pretrained, load_weights, read_state_dict, save_pretrained)
from core.presets import TINY_TEACHER


class CodeOnUnpickle:
    """Unpickling this object would run ``exec`` and create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    # The payload is live: plain unpickling runs it.
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(CodeOnUnpickle(control)))
    assert control.read_text() == "ran"
    # The same payload inside a torch checkpoint is refused and never executed.
    marker = tmp_path / "payload-ran"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"latent_tokens": torch.zeros(2), "evil": CodeOnUnpickle(marker)}, path)
    with pytest.raises(CheckpointError, match="weights-only.*execute code"):
        read_state_dict(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_pretrained(path, config="tiny")
    assert not marker.exists()


def test_wrong_keys_are_listed(tiny_model):
    state = dict(tiny_model.state_dict())
    del state["decoder.ln_post.weight"], state["encoder.conv_out.bias"]
    state["decoder.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        load_weights(SFTok(create_config("tiny")), state, source="ckpt.bin")
    message = str(err.value)
    assert message.startswith("ckpt.bin does not fit SFTok")
    assert "2 missing key(s): decoder.ln_post.weight, encoder.conv_out.bias" in message
    assert "1 unexpected key(s): decoder.extra.weight" in message


def test_wrong_shapes_are_listed(tiny_model):
    state = dict(tiny_model.state_dict())
    width = tiny_model.config.encoder.width
    state["latent_tokens"] = torch.zeros(32, width)
    with pytest.raises(CheckpointError, match=rf"1 wrong shape\(s\): latent_tokens checkpoint \(32, {width}\) vs model \(64, {width}\)"):
        load_weights(SFTok(create_config("tiny")), state, strict=False)


def test_nan_weights_are_refused(tiny_model):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state["decoder.ffn.2.bias"][3] = float("nan")
    state["encoder.ln_pre.weight"][0] = float("inf")
    with pytest.raises(CheckpointError, match=r"2 tensor\(s\) contain NaN or Inf.*'encoder.ln_pre.weight'"):
        load_weights(SFTok(create_config("tiny")), state)


@pytest.fixture
def saved_tiny(tmp_path, tiny_model) -> Path:
    return save_pretrained(tiny_model, tmp_path / "tiny")


def test_truncated_files_are_refused(tmp_path, saved_tiny, tiny_model):
    data = (saved_tiny / "model.safetensors").read_bytes()
    (saved_tiny / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_pretrained(saved_tiny)
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save(tiny_model.state_dict(), bin_path)
    bin_path.write_bytes(bin_path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="could not be read as a weights-only torch checkpoint"):
        read_state_dict(bin_path)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="file is empty"):
        read_state_dict(empty)


def test_safetensors_header_lies_are_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.arange(8, dtype=torch.float32)}, str(good))
    raw = good.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    # 1) the header promises more bytes than the file holds
    header["w"]["data_offsets"] = [0, 4096]
    body = json.dumps(header).encode()
    (tmp_path / "offsets.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + header_len:])
    # 2) the length prefix claims a header far larger than the file
    (tmp_path / "length.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + raw[8:])
    # 3) shape and byte count disagree
    header["w"]["data_offsets"], header["w"]["shape"] = [0, 32], [4, 4]
    body = json.dumps(header).encode()
    (tmp_path / "shape.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + header_len:])
    for name in ("offsets", "length", "shape"):
        with pytest.raises(CheckpointError, match="not a valid safetensors file"):
            read_state_dict(tmp_path / f"{name}.safetensors")


def test_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.bin"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="does not hold a flat mapping of parameter names to tensors"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "missing.bin")


def test_round_trip_sftok(saved_tiny, tiny_model, tiny_ids):
    assert sorted(p.name for p in saved_tiny.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((saved_tiny / "config.json").read_text())["model_type"] == "sftok"
    loaded = load_pretrained(saved_tiny)
    assert isinstance(loaded, SFTok) and not loaded.training
    assert loaded.config == tiny_model.config
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    a = tiny_model.decode_tokens(tiny_ids, 2, 1.0, torch.Generator().manual_seed(0))
    b = loaded.decode_tokens(tiny_ids, 2, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_round_trip_official_style_folder(tmp_path, tiny_model):
    """An official HF folder: config.json holds the training config, weights in pytorch_model.bin."""
    from tests.core.test_core_config import OFFICIAL_LAYOUT

    layout = json.loads(json.dumps(OFFICIAL_LAYOUT))
    layout["model"]["vq_model"].update(finetune_decoder=False, vit_enc_model_size="tiny")
    layout["model"]["decoder"]["vit_dec_model_size"] = "tiny"
    torch.manual_seed(0)
    model = SFTok(layout).eval()
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(layout))
    state = dict(model.state_dict())
    state["decoder.embedding_positional_embedding"] = state.pop("decoder.learnable_embedding_positional_embedding")
    torch.save(state, folder / "pytorch_model.bin")
    loaded = load_pretrained(folder)
    assert loaded.config == model.config and loaded.config.has_pixel_head is False
    assert torch.equal(loaded.decoder.learnable_embedding_positional_embedding,
                       model.decoder.learnable_embedding_positional_embedding)


def test_round_trip_teacher_and_generator(tmp_path):
    torch.manual_seed(0)
    teacher = MaskGITVQGAN(TINY_TEACHER).eval()
    generator = MaskGITGenerator(GENERATOR_PRESETS["tiny"]).eval()
    for model, name in ((teacher, "teacher"), (generator, "generator")):
        loaded = load_pretrained(save_pretrained(model, tmp_path / name))
        assert type(loaded) is type(model) and loaded.config == model.config
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    images = torch.rand(1, 3, 64, 64)
    assert torch.equal(load_pretrained(tmp_path / "teacher").encode(images), teacher.encode(images))


def test_bare_weights_file_needs_a_config(tmp_path, tiny_model):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="needs a config"):
        load_pretrained(path)
    assert isinstance(load_pretrained(path, config="tiny"), SFTok)


def test_hub_id_offline_fails_fast_with_checkpoint_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"'AndyRaoTHU/SFTok-B' is neither a local path nor a reachable"):
        load_pretrained("AndyRaoTHU/SFTok-B")
    assert time.monotonic() - start < 10.0
