"""Hostile checkpoints: code-running pickles, truncation, wrong architectures, NaN weights, lying
safetensors headers and lying config.json files. Each is a CheckpointError that says what is wrong,
and nothing in the file is ever executed."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from tests.app_fixtures import named
import torch
from gradio_client.exceptions import AppError
from safetensors.torch import save_file

from core import load_pretrained, save_pretrained
from core.checkpoint import CheckpointError, read_state_dict
from core.pretrained import from_pretrained
from tests.robustness.conftest import peak_rss_delta_mb


@pytest.fixture(scope="module")
def tiny_state(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(tiny_model_dir / "model.safetensors")


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- pickles that would run code ------------------------------------------------------------------

class _RunsCode:
    """Unpickling this calls ``exec``, which writes ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    import pickle

    payload = {"encoder.weight": torch.zeros(2), "x": _RunsCode(marker)}
    files = {}
    for protocol in (2, 4):
        files[f"torch_save_p{protocol}.bin"] = folder / f"torch_save_p{protocol}.bin"
        torch.save(payload, files[f"torch_save_p{protocol}.bin"], pickle_protocol=protocol)
        files[f"raw_pickle_p{protocol}.pt"] = folder / f"raw_pickle_p{protocol}.pt"
        files[f"raw_pickle_p{protocol}.pt"].write_bytes(pickle.dumps(payload, protocol=protocol))
    files["legacy_format.bin"] = folder / "legacy_format.bin"
    torch.save(payload, files["legacy_format.bin"], _use_new_zipfile_serialization=False)
    files["pickle_named.safetensors"] = folder / "pickle_named.safetensors"
    files["pickle_named.safetensors"].write_bytes(pickle.dumps(payload))
    files["nested_in_state_dict.bin"] = folder / "nested_in_state_dict.bin"
    torch.save({"state_dict": {"a": torch.ones(1)}, "optimizer": _RunsCode(marker)}, files["nested_in_state_dict.bin"])
    return files


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickles_that_would_run_code_are_refused_and_never_run(tmp_path, tally):
    marker = tmp_path / "code_ran"
    files = _evil_files(tmp_path, marker)
    assert not marker.exists()
    for name, path in files.items():
        tally.input("checkpoints")
        with pytest.raises(CheckpointError) as err:
            read_state_dict(path)
        assert path.name in str(err.value)
        assert not marker.exists(), f"{name}: unpickling ran code"


def test_code_running_pickle_inside_a_model_folder_and_a_training_checkpoint(tmp_path, tiny_model_dir, tally):
    from trainers.training_state import load_checkpoint, save_checkpoint

    marker = tmp_path / "code_ran"
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    torch.save({"w": _RunsCode(marker)}, folder / "pytorch_model.bin")
    tally.input("checkpoints", 2)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_pretrained(folder)
    path = save_checkpoint(tmp_path / "run", 5, {"w": torch.ones(2)}, None, {"opt": 1}, {})
    torch.save({"optimizer": _RunsCode(marker)}, path / "training_state.pt")
    with pytest.raises(CheckpointError, match="training_state|unreadable"):
        load_checkpoint(path)
    assert not marker.exists()


# -- truncation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_truncated_weight_files_are_refused_at_every_cut(tmp_path, tiny_state, fmt, tally):
    full = tmp_path / f"full.{fmt}"
    if fmt == "safetensors":
        save_file(tiny_state, str(full))
    else:
        torch.save(tiny_state, full)
    data = full.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8]) if fmt == "safetensors" else (0,)
    cuts = sorted({1, 7, 8, 9, 8 + header_len // 2, 8 + header_len, len(data) // 3, len(data) // 2, len(data) - 1})
    for cut in cuts:
        broken = tmp_path / f"cut_{cut}.{fmt}"
        broken.write_bytes(data[:cut])
        tally.input("checkpoints")
        with pytest.raises(CheckpointError) as err:
            read_state_dict(broken)
        assert broken.name in str(err.value)
    assert set(read_state_dict(full)) == set(tiny_state)  # the untruncated file is fine


def test_truncated_model_folder_is_refused_by_load_pretrained(tmp_path, tiny_model_dir, tally):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    tally.input("checkpoints")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_pretrained(folder)


# -- wrong architecture -------------------------------------------------------------------------

def test_weights_of_another_architecture_are_listed_by_key(tmp_path, tiny_model_dir, tally):
    from core import GENERATOR_PRESETS, MaskGITGenerator

    torch.manual_seed(0)
    gen_dir = save_pretrained(MaskGITGenerator(GENERATOR_PRESETS["tiny"]), tmp_path / "gen")
    liar = tmp_path / "gen_claims_sftok"
    shutil.copytree(gen_dir, liar)
    shutil.copy(tiny_model_dir / "config.json", liar / "config.json")
    tally.input("checkpoints", 3)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(liar)
    assert "missing key(s)" in str(err.value) and "unexpected key(s)" in str(err.value)
    # the same weights under a different SFTok width: listed as wrong shapes
    wide = _copy_model(tiny_model_dir, tmp_path / "wide")
    meta = json.loads((wide / "config.json").read_text())
    meta["config"]["token_size"] = 32
    (wide / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"wrong shape\(s\): .*checkpoint \(.*16\) vs model \(.*32\)"):
        load_pretrained(wide)
    with pytest.raises(CheckpointError, match="holds a MaskGITGenerator, not an SFTok"):
        from_pretrained(gen_dir)


def test_config_that_describes_a_giant_model_fails_on_shapes_without_allocating_it(tmp_path, tiny_model_dir, tally):
    liar = _copy_model(tiny_model_dir, tmp_path / "giant")
    meta = json.loads((liar / "config.json").read_text())
    meta["config"]["codebook_size"] = 1_000_000_000  # 64 GB of codebook if it were built
    (liar / "config.json").write_text(json.dumps(meta))
    errors = []

    def load() -> None:
        try:
            load_pretrained(liar)
        except CheckpointError as err:
            errors.append(str(err))

    used = peak_rss_delta_mb(load)
    tally.input("checkpoints")
    assert errors and "quantize.embedding checkpoint (1, 1024, 16) vs model (1, 1000000000, 16)" in errors[0]
    assert used < 200, f"peaked at {used:.0f} MB"


@pytest.mark.parametrize("meta, message", [
    ([1, 2, 3], "expected a JSON object, got list"),
    ("sftok", "expected a JSON object, got str"),
    ({"model_type": ["sftok"], "config": {}}, "unknown model_type"),
    ({"model_type": "resnet", "config": {}}, "unknown model_type 'resnet'"),
    ({"model_type": "sftok", "config": 7}, "not a valid sftok config"),
    ({"model_type": "sftok", "config": {"image_size": "big"}}, "image_size"),
    ({"model_type": "maskgit_vqgan", "config": {"bogus": 1}}, "not a valid maskgit_vqgan config.*bogus"),
    ({"model_type": "generator", "config": {"bogus": 1}}, "not a valid generator config.*bogus"),
], ids=["list", "string", "type-list", "type-unknown", "config-int", "field-type", "teacher-field", "generator-field"])
def test_lying_config_json_is_a_checkpoint_error(tmp_path, tiny_model_dir, meta, message, tally):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    (folder / "config.json").write_text(json.dumps(meta))
    tally.input("checkpoints")
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(folder)


def test_config_json_that_is_not_text_is_a_checkpoint_error(tmp_path, tiny_model_dir, tally):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    (folder / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    tally.input("checkpoints")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_pretrained(folder)


# -- NaN / Inf ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, dtype", [(float("nan"), torch.float32), (float("inf"), torch.float32),
                                        (float("-inf"), torch.float16), (float("nan"), torch.bfloat16)])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, tiny_model_dir, tiny_state, bad, dtype, tally):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    state = dict(tiny_state)
    key = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 10)[3]
    poisoned = state[key].clone()
    poisoned.view(-1)[7] = bad
    state[key] = poisoned.to(dtype)
    save_file(state, str(folder / "model.safetensors"))
    tally.input("checkpoints")
    with pytest.raises(CheckpointError, match=rf"1 tensor\(s\) contain NaN or Inf, e.g. \['{key}'\]"):
        load_pretrained(folder)


# -- safetensors header lies ---------------------------------------------------------------------

def _safetensors(path: Path, header: object, data: bytes = b"\0" * 8, claimed_len: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if claimed_len is None else claimed_len) + raw + data)
    return path


def _t(dtype: str, shape: list, offsets: list) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


HEADER_LIES = {
    "length_beyond_file": dict(header={"a": _t("F32", [2], [0, 8])}, claimed_len=10**6),
    "length_2_62": dict(header={}, data=b"", claimed_len=2**62),
    "offset_beyond_data": dict(header={"a": _t("F32", [2], [0, 8000])}),
    "shape_too_big": dict(header={"a": _t("F32", [10**6, 10**6], [0, 8])}),
    "shape_overflow": dict(header={"a": _t("F32", [2**40, 2**40], [0, 8])}),
    "dtype_size_lie": dict(header={"a": _t("F64", [2], [0, 8])}),
    "unknown_dtype": dict(header={"a": _t("Q99", [2], [0, 8])}),
    "negative_dim": dict(header={"a": _t("F32", [-2], [0, 8])}),
    "overlapping_tensors": dict(header={"a": _t("F32", [2], [0, 8]), "b": _t("F32", [2], [0, 8])}),
    "reversed_offsets": dict(header={"a": _t("F32", [2], [8, 0])}),
    "header_is_a_list": dict(header=[1, 2]),
    "header_is_a_string": dict(header="hello"),
}


@pytest.mark.parametrize("name", sorted(HEADER_LIES))
def test_safetensors_header_lies_are_refused(tmp_path, name, tally):
    spec = HEADER_LIES[name]
    path = _safetensors(tmp_path / f"{name}.safetensors", **spec)
    tally.input("checkpoints")
    with pytest.raises(CheckpointError, match="not a valid safetensors file") as err:
        read_state_dict(path)
    assert path.name in str(err.value)


def test_honest_safetensors_file_of_the_same_shape_loads(tmp_path):
    path = _safetensors(tmp_path / "ok.safetensors", {"a": _t("F32", [2], [0, 8])})
    assert read_state_dict(path)["a"].tolist() == [0.0, 0.0]


# -- through the app -------------------------------------------------------------------------------

def test_app_refuses_broken_model_folders_and_keeps_serving(served_app, client, tiny_model_dir, tally):
    ctx = served_app[0]
    root = ctx.workspace.root / "broken_models"
    truncated = _copy_model(tiny_model_dir, root / "truncated")
    (truncated / "model.safetensors").write_bytes((truncated / "model.safetensors").read_bytes()[:5000])
    nan = _copy_model(tiny_model_dir, root / "nan")
    state = read_state_dict(nan / "model.safetensors")
    first = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[first] = torch.full_like(state[first], float("nan"))
    save_file(state, str(nan / "model.safetensors"))
    lying = _copy_model(tiny_model_dir, root / "lying_config")
    (lying / "config.json").write_text(json.dumps({"model_type": "sftok", "config": {"codebook_size": -1}}))
    evil = _copy_model(tiny_model_dir, root / "pickle")
    (evil / "model.safetensors").unlink()
    marker = root / "code_ran"
    torch.save({"w": _RunsCode(marker)}, evil / "pytorch_model.bin")
    expected = {"broken_models/truncated": "not a valid safetensors file",
                "broken_models/nan": "contain NaN or Inf",
                "broken_models/lying_config": "not a valid sftok config",
                "broken_models/pickle": "weights-only"}
    for choice, message in expected.items():
        tally.input("checkpoints (app)")
        with pytest.raises(AppError, match=message):
            client.predict("coffee", choice, 2, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    assert not marker.exists()
    out = client.predict("coffee", "default", 2, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    assert "<b>Step 2 / 2</b>" in named(out)["scrubber"]  # the scrubber opens on the last step
