"""The app's device: chosen at start (unknown ones refused), every model and input of a request put there by
one :class:`Placement`, and a device out of memory answered with a message while the app keeps serving.

There is no GPU here, so the requested device is the CPU and a recording placement proves the plumbing:
it records every model it moves and marks every input it places (a tensor subclass that the results of
any operation on it inherit), and the models' entry points check that each tensor they receive carries
the mark, i.e. came through the placement or was computed from something that did.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import torch

import app
from core.precision import Bf16Support
from workbench.io.workspace import Workspace
from workbench.services.analyses import AnalysisService, default_dataset
from workbench.services.decoding import DecodeService, DecodeSettings, SettingsError
from workbench.services.devices import DeviceUnavailable, Placement, available_devices, resolve_device
from workbench.services.model_registry import ModelRegistry
from workbench.services.reconstruction import reconstruct_file
from workbench.ui.components.errors import user_errors
from workbench.ui.components.precision_picker import precision_line, precision_radio

from tests.workbench.conftest import make_workspace

ENTRY_POINTS = ("encode", "decode_steps", "iter_decode_steps", "decode_ids", "decode_tokens", "render_soft", "render_codes", "generate")


class Placed(torch.Tensor):
    """A tensor that went through the placement (or was computed from one that did)."""


class RecordingPlacement(Placement):
    """Moves to ``device`` like the real one and records what it moved; models' entry points check their inputs."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device)
        self.models: list[tuple[str, str]] = []  # (model class, device it was moved to)
        self.moved: list[torch.nn.Module] = []
        self.inputs: list[str] = []  # device of every placed tensor
        self.generators: list[str] = []
        self.calls: list[tuple[str, str, bool]] = []  # (model class, entry point, every tensor input placed)

    def model(self, module):
        moved = super().model(module)
        self.models.append((type(module).__name__, str(self.device)))
        self.moved.append(moved)
        for name in ENTRY_POINTS:
            if hasattr(moved, name):
                setattr(moved, name, self._checked(type(moved).__name__, name, getattr(moved, name)))
        return moved

    def tensor(self, x):
        placed = super().tensor(x)
        self.inputs.append(str(placed.device))
        return placed.as_subclass(Placed)

    def generator(self, seed):
        gen = super().generator(seed)
        self.generators.append(str(gen.device))
        return gen

    def _checked(self, owner: str, name: str, method):
        def call(*args, **kwargs):
            values = [*args, *kwargs.values()]
            tensors = [v for v in values if isinstance(v, torch.Tensor)]
            generators = [v for v in values if isinstance(v, torch.Generator)]
            ok = (all(isinstance(t, Placed) and t.device == self.device for t in tensors)
                  and all(g.device == self.device for g in generators))
            self.calls.append((owner, name, ok))
            return method(*args, **kwargs)
        return call


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace.create(make_workspace(tmp_path_factory.mktemp("device-ws")))


def recording_registry(workspace: Workspace, model_dir: Path) -> tuple[ModelRegistry, RecordingPlacement]:
    placement = RecordingPlacement("cpu")
    return ModelRegistry(workspace, model_dir, teacher=None, default_generator=None, placement=placement), placement


def assert_all_on_device(placement: RecordingPlacement, models: int) -> None:
    assert len(placement.moved) == models
    assert {device for _, device in placement.models} == {"cpu"}
    for model in placement.moved:
        assert {str(p.device) for p in model.parameters()} == {"cpu"}
    assert placement.inputs and set(placement.inputs) == {"cpu"}
    refused = [(owner, name) for owner, name, ok in placement.calls if not ok]
    assert placement.calls and not refused, f"inputs that did not come through the placement: {refused}"


def test_reconstruct_and_generate_run_every_model_and_input_on_the_placement(workspace, tiny_model_dir, sample_dir):
    registry, placement = recording_registry(workspace, tiny_model_dir)
    service = DecodeService(registry)
    settings = DecodeSettings(4, 1.0, 3)
    rec = reconstruct_file(service, "default", sample_dir / "chelsea.png", settings)
    edited = (rec.encoded[0] + 1) % registry.get("default").model.config.codebook_size, *rec.encoded[1:]
    reconstruct_file(service, "default", sample_dir / "chelsea.png", settings, tokens=edited)  # token surgery
    service.generate("checkpoints/generator", "default", 2, settings, 2.0)
    assert_all_on_device(placement, models=2)  # the tokenizer and the generator, each moved once
    called = {(owner, name) for owner, name, _ in placement.calls}
    assert {("SFTok", "encode"), ("SFTok", "iter_decode_steps"), ("SFTok", "decode_tokens"),
            ("MaskGITGenerator", "generate")} <= called
    assert placement.generators and set(placement.generators) == {"cpu"}
    assert rec.trace.previews.dtype.name == "uint8" and rec.trace.final.shape[-1] == 3  # pictures back on the CPU


def test_an_analysis_runs_its_images_on_the_placement(workspace, tiny_model_dir):
    registry, placement = recording_registry(workspace, tiny_model_dir)
    analyses = AnalysisService(registry, workspace)
    dataset = default_dataset(workspace)
    _, report = analyses.codebook("default", dataset, "val", 8)
    _, info = analyses.information(["default"], dataset, "val", 2, 2, 2, 1.0, 0)
    assert_all_on_device(placement, models=1)
    assert report.books["tokens"].stats.num_samples == 8 and info.num_images == 2
    assert ("SFTok", "encode") in {(o, n) for o, n, _ in placement.calls}


def test_an_input_that_skips_the_placement_is_caught(workspace, tiny_model_dir):
    """The check above can fail: an image tensor made without the placement is flagged."""
    registry, placement = recording_registry(workspace, tiny_model_dir)
    model = registry.get("default").model
    size = model.config.image_size
    with torch.no_grad():
        model.encode(torch.rand(1, 3, size, size))
    assert placement.calls[-1] == ("SFTok", "encode", False)


def test_unknown_or_absent_devices_are_refused_at_start(capsys, tiny_model_dir, tmp_path):
    assert app.parse_args([]).device == "auto"
    for bad in ("tpu", "cuda:99"):
        assert app.main(["--device", bad, "--model", str(tiny_model_dir), "--workspace", str(tmp_path / "ws")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: device:") and f"this machine has {', '.join(available_devices())}" in err
        assert "Traceback" not in err
    assert not (tmp_path / "ws").exists()  # refused before anything was built


def test_auto_takes_the_first_gpu_and_absent_indices_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("CUDA:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceUnavailable, match=r"'cuda:2' is not available here; this machine has cpu, cuda:0, cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceUnavailable, match="'mps' is not available here; this machine has cpu$"):
        resolve_device("mps")


def test_out_of_memory_gives_a_message_and_the_next_request_works(workspace, tiny_model_dir, sample_dir, caplog):
    registry = ModelRegistry(workspace, tiny_model_dir, teacher=None, default_generator=None)
    service = DecodeService(registry)
    decoder = registry.get("default").model.decoder

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = decoder.register_forward_pre_hook(out_of_memory)
    decode = user_errors(lambda seed: reconstruct_file(service, "default", sample_dir / "chelsea.png",
                                                       DecodeSettings(8, 1.0, seed)))
    with pytest.raises(gr.Error) as failed:
        decode(0)
    message = str(failed.value.message)
    assert failed.value.title == "Out of device memory"
    assert message.startswith("the device ran out of memory while decoding 1 image in 8 steps with a preview of every "
                              "step (embedded default, cpu)")
    assert "Lower the number of decoding steps" in message and "--device" in message
    hook.remove()
    assert decode(0).trace.num_steps == 8  # the same request works now: nothing stayed locked or cached
    assert service.decodes == 1


# -- precision -------------------------------------------------------------------------------------
NATIVE = Bf16Support("cpu", True, "this CPU has AMX (oneDNN bf16 kernels)")
EMULATED = Bf16Support("cpu", False, "this CPU has neither AVX512-BF16 nor AMX, so bf16 would be emulated")


def test_bf16_runs_where_native_and_reports_its_agreement_with_fp32(workspace, tiny_model_dir, sample_dir):
    service = DecodeService(ModelRegistry(workspace, tiny_model_dir, teacher=None, default_generator=None))
    service.bf16 = NATIVE  # as a CPU with AMX reports it
    fp32 = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(4, 1.0, 3)).trace
    bf16 = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(4, 1.0, 3, "bf16")).trace
    assert (fp32.precision, fp32.fp32_agreement) == ("fp32", None)
    expected = float((bf16.ids_out[-1] == fp32.ids_out[-1]).mean())  # the same seed's fp32 decode
    assert bf16.precision == "bf16" and bf16.fp32_agreement == pytest.approx(expected)
    assert precision_line(bf16) == (f"Precision bf16: {expected:.1%} of the final proxy ids agree with the same decode "
                                    "in fp32.")
    _, generated = service.generate("checkpoints/generator", "default", 1, DecodeSettings(2, 1.0, 0, "bf16"), 2.0)
    assert generated.precision == "bf16" and 0.0 <= generated.fp32_agreement <= 1.0


def test_bf16_where_not_native_runs_fp32_and_says_why(workspace, tiny_model_dir, sample_dir):
    service = DecodeService(ModelRegistry(workspace, tiny_model_dir, teacher=None, default_generator=None))
    service.bf16 = EMULATED
    fp32 = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(4, 1.0, 3))
    asked = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(4, 1.0, 3, "bf16"))
    assert asked.trace_key == fp32.trace_key and service.decodes == 1  # the fp32 decode, served from the cache
    assert asked.trace.precision == "fp32" and asked.trace.fp32_agreement is None
    assert precision_line(asked.trace) == ("⚠ bf16 is not native on cpu (this CPU has neither AVX512-BF16 nor AMX, so "
                                           "bf16 would be emulated): running fp32 instead.")
    with pytest.raises(SettingsError, match="precision: must be one of fp32, bf16, got 'fp16'"):
        DecodeSettings(4, 1.0, 3, "fp16")


def test_the_precision_control_is_disabled_with_the_reason_where_bf16_is_not_native():
    off = precision_radio(EMULATED, "rec")
    assert off.interactive is False and off.value == "fp32"
    assert off.info == f"bf16 is off: {EMULATED.reason}"
    on = precision_radio(NATIVE, "rec")
    assert on.interactive is True and on.value == "fp32" and NATIVE.reason in on.info
