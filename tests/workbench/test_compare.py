"""The A/B comparison: budgets, held frames and per-step PSNR (known answers), the tokenizer listing, the
service on tiny random SFTok / TiTok / teacher models and a ReVQ release folder, and the served app's A/B endpoint."""
from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.tokenizer import TokenizerInfo
from tests.app_fixtures import save_tiny_model, save_tiny_teacher, save_tiny_titok
from tests.core.test_revq import TINY as REVQ_TINY
from tests.core.test_revq import build as build_revq
from tests.core.test_revq import save_tiny_dcae, write_release
from workbench.io.images import image_to_tensor, prepare_image, tensor_to_uint8
from workbench.services.compare import CompareService, TokenBudget, held_indices, step_psnr, token_budget
from workbench.services.decoding import DecodeService, DecodeSettings, SettingsError
from workbench.services.model_registry import TEACHER_CHOICE, TOKENIZERS, ModelRegistry, ModelUnavailable
from workbench.ui.pages.compare import budget_markdown, default_b, psnr_figure, view_html

# Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255: a grey offset d moves luma by d * 219 / 255
LUMA_GAIN = (65.481 + 128.553 + 24.966) / 255.0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One of each: TiTok, teacher and SFTok run folders, a generator, and release files listed by name only."""
    from core import GENERATOR_PRESETS, MaskGITGenerator, save_pretrained

    root = tmp_path_factory.mktemp("ab-workspace")
    save_tiny_titok(root / "checkpoints" / "titok")
    save_tiny_teacher(root / "checkpoints" / "teacher")
    save_tiny_model(root / "runs" / "r1" / "checkpoints" / "model", seed=3)
    save_pretrained(MaskGITGenerator(GENERATOR_PRESETS["tiny"]).eval(), root / "checkpoints" / "generator")
    (root / "downloads").mkdir()
    (root / "downloads" / "tokenizer_titok_b64.bin").write_bytes(b"not weights: a listing must not read them")
    (root / "revq-512T").mkdir()
    (root / "revq-512T" / "ckpt.pth").write_bytes(b"junk")
    revq = write_release(root / "revq-tiny", build_revq(REVQ_TINY, 0))  # a release folder as a user keeps it
    save_tiny_dcae(revq / "dc_ae", seed=4)
    # official layouts: config.json is a training config without model_type; TiTok's is told by its tensor names
    for name, source in (("titok-hub", "checkpoints/titok"), ("sftok-official", "checkpoints/teacher")):
        (root / "official" / name).mkdir(parents=True)
        shutil.copy(root / source / "model.safetensors", root / "official" / name / "model.safetensors")
        (root / "official" / name / "config.json").write_text(json.dumps({"model": {"vq_model": {}}}))
    return root


@pytest.fixture(scope="module")
def registry(tokenizer_registry) -> ModelRegistry:
    return tokenizer_registry


@pytest.fixture(scope="module")
def service(registry) -> CompareService:
    return CompareService(registry)


# -- known answers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens, codebook, bits, text", [
    (64, 8192, 832, "64 tokens × 13 bits = 832 bits"),  # SFTok-tiny / B-64 budget of the paper
    (256, 1024, 2560, "256 tokens × 10 bits = 2560 bits"),  # the released MaskGIT-VQGAN teacher
    (32, 4096, 384, "32 tokens × 12 bits = 384 bits"),  # TiTok-L-32
    (512, 16384, 7168, "512 tokens × 14 bits = 7168 bits"),  # ReVQ 512T
    (64, 1000, 64 * math.log2(1000), "64 tokens × 10.0 bits = 637.8 bits"),  # not a power of two
])
def test_token_budget(tokens, codebook, bits, text):
    budget = TokenBudget(tokens, codebook)
    assert budget.bits == pytest.approx(bits) and budget.describe() == text
    info = TokenizerInfo("sftok", 64, tokens, codebook, None, 32, 8)
    assert token_budget(info) == budget


def test_held_indices():
    assert held_indices(1, 4) == [0, 0, 0, 0]  # one-step: its frame at every step
    assert held_indices(8, 8) == list(range(8))
    assert held_indices(3, 5) == [0, 1, 2, 2, 2]  # finished early: last frame held
    with pytest.raises(ValueError, match="at least one"):
        held_indices(0, 4)


def test_step_psnr_known_answers():
    reference = torch.full((1, 3, 16, 16), 0.5)
    frames = torch.cat([reference, reference + 0.1, reference - 0.2])
    got = step_psnr(frames, reference)
    assert math.isinf(got[0]) and got[0] > 0  # identical: inf, not the metric's 100 dB floor
    assert got[1] == pytest.approx(-20 * math.log10(0.1 * LUMA_GAIN), abs=1e-4)  # 21.32 dB
    assert got[2] == pytest.approx(-20 * math.log10(0.2 * LUMA_GAIN), abs=1e-4)  # 15.30 dB
    assert got[1] == pytest.approx(21.3219, abs=1e-3)


# -- the tokenizer listing --------------------------------------------------------------------------------
def test_listing_offers_every_family_without_reading_weights(registry):
    choices = dict((value, label) for label, value in registry.choices(TOKENIZERS))
    assert choices["default"].startswith("embedded default")
    assert TEACHER_CHOICE in choices
    assert choices["checkpoints/titok"] == "checkpoints/titok (TiTok)"
    assert choices["checkpoints/teacher"] == "checkpoints/teacher (MaskGIT-VQGAN teacher)"
    assert choices["runs/r1/checkpoints/model"] == "runs/r1/checkpoints/model (SFTok)"
    assert choices["downloads/tokenizer_titok_b64.bin"].endswith("(TiTok)")  # junk bytes: listed by name
    assert choices["revq-512T"] == "revq-512T (ReVQ)"
    assert "checkpoints/generator" not in choices
    assert choices["official/titok-hub"] == "official/titok-hub (TiTok)"
    assert choices["official/sftok-official"] == "official/sftok-official (SFTok)"  # no TiTok tensor names
    # the SFTok pickers are unchanged: no other family there
    sftok_only = {v for _, v in registry.choices()}
    assert {"default", "runs/r1/checkpoints/model"} <= sftok_only
    assert not sftok_only & {TEACHER_CHOICE, "checkpoints/titok", "checkpoints/teacher", "revq-512T"}


def test_a_broken_listed_file_is_a_message(registry):
    with pytest.raises(ModelUnavailable, match="tokenizer_titok_b64.bin"):
        registry.tokenizer("downloads/tokenizer_titok_b64.bin")
    with pytest.raises(ModelUnavailable, match="ckpt.pth"):
        registry.tokenizer("revq-512T")


# -- the service ------------------------------------------------------------------------------------------
def test_sftok_against_one_step_titok(service, registry, photo):
    result = service.compare("default", "checkpoints/titok", photo, DecodeSettings(8, 1.0, 0))
    a, b = result.sides
    assert (a.own_steps, b.own_steps, result.steps) == (8, 1, 8)
    assert b.index == [0] * 8 and len(set(b.psnr.tolist())) == 1  # the one-step frame, held
    assert b.held_at(1) and not b.held_at(0) and not a.held_at(7)
    assert (a.budget.bits, b.budget.bits) == (640, 384)  # 64 x 10 and 32 x 12
    # side A through the Tokenizer interface is Reconstruct's own decode: same frames, same per-step PSNR
    image = prepare_image(photo, 64).image
    _, trace = DecodeService(registry).reconstruct("default", image, DecodeSettings(8, 1.0, 0))
    assert np.array_equal(a.frames, trace.previews)
    np.testing.assert_allclose(a.psnr, trace.metrics["PSNR (dB)"], atol=1e-4)
    assert np.array_equal(a.input_image, np.asarray(image))


def test_teacher_frame_is_its_one_pass_repeated(service, registry, photo):
    result = service.compare("default", TEACHER_CHOICE, photo, DecodeSettings(5, 0.0, 0))
    side = result.b
    assert side.info.token_grid == (16, 16) and side.budget.describe() == "256 tokens × 8 bits = 2048 bits"
    assert side.frames.shape == (1, 64, 64, 3)
    teacher = registry.teacher()
    x = image_to_tensor(prepare_image(photo, 64).image)
    with torch.no_grad():
        expected = tensor_to_uint8(teacher.decode_codes(teacher.encode(x)))[0]
    assert all(np.array_equal(side.frame_at(s), expected) for s in range(5))
    assert side.psnr.shape == (5,) and np.all(side.psnr == side.psnr[0])


def test_sftok_against_a_revq_release_folder(service, registry, photo):
    """ReVQ loaded the way the screen loads it (its folder, the DC-AE's diffusers folder beside ckpt.pth), at its
    own 256 px: one frame held across the steps, its PSNR against its own crop, its budget per position."""
    result = service.compare("default", "revq-tiny", photo, DecodeSettings(4, 1.0, 0))
    side = result.b
    assert side.info.family == "revq" and side.own_steps == 1 and side.frames.shape == (1, 256, 256, 3)
    assert side.budget.describe() == "256 tokens × 6 bits = 1536 bits"  # 64 codes in each position's own book
    tok = registry.tokenizer("revq-tiny").tokenizer
    x = image_to_tensor(prepare_image(photo, 256).image)
    expected = tensor_to_uint8(tok.decode(tok.encode(x)))[0]
    assert all(np.array_equal(side.frame_at(s), expected) for s in range(4))
    assert side.psnr.shape == (4,) and np.all(side.psnr == side.psnr[0])


def test_two_sftok_checkpoints_both_move_and_the_cache_answers(service, photo):
    settings = DecodeSettings(4, 1.0, 0)
    before = service.decodes
    result = service.compare("default", "runs/r1/checkpoints/model", photo, settings)
    again = service.compare("default", "runs/r1/checkpoints/model", photo, settings)
    assert again is result and service.decodes == before + 1
    for side in result.sides:
        assert side.own_steps == 4 and side.index == [0, 1, 2, 3]
    assert not np.array_equal(result.a.frames[-1], result.b.frames[-1])  # two different checkpoints


def test_bad_requests_are_messages(service, photo):
    with pytest.raises(SettingsError, match="no image"):
        service.compare("default", TEACHER_CHOICE, "", DecodeSettings())
    with pytest.raises(SettingsError, match="steps"):
        DecodeSettings(0)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        service.compare("default", "checkpoints/none/here", photo, DecodeSettings())


# -- what the screen shows --------------------------------------------------------------------------------
def _ab_data(view: str) -> dict:
    found = re.search(r'data-ab="([^"]*)"', view)
    assert found, view[:300]
    return json.loads(html.unescape(found.group(1)))


def test_screen_pieces(service, registry, photo):
    assert default_b(registry) == TEACHER_CHOICE  # no embedded comparison here: the teacher
    result = service.compare("default", "checkpoints/titok", photo, DecodeSettings(8, 1.0, 0))
    data = _ab_data(view_html(result))
    assert data["steps"] == 8 and data["a"]["index"] == list(range(8)) and data["b"]["index"] == [0] * 8
    assert len(data["a"]["frames"]) == 8 and len(data["b"]["frames"]) == 1
    assert "held: decodes in one step" in data["b"]["captions"][3] and "held" not in data["a"]["captions"][3]
    budget = budget_markdown(result)
    assert "64 tokens × 10 bits = 640 bits" in budget and "32 tokens × 12 bits = 384 bits" in budget
    assert "1.67× the bits of B" in budget
    same = service.compare("default", "default", photo, DecodeSettings(2, 0.0, 0))
    same.a.psnr[:] = np.inf  # as for an image the tokenizer rebuilds exactly: left out of the plot, said in text
    figure = psnr_figure(same)
    assert figure["data"][0]["y"] == [None, None] and figure["data"][1]["y"][0] is not None
    assert "∞ dB (identical to the input)" in budget_markdown(same)
    service._cache = type(service._cache)(8)  # the edited result must not be served again


# -- the served app ---------------------------------------------------------------------------------------
@pytest.fixture()
def served_titok(served_app):
    """A tiny TiTok in the served app's workspace for one test (other tests list that workspace's models)."""
    folder = served_app[0].workspace.root / "ab-test" / "titok"
    save_tiny_titok(folder)
    yield "ab-test/titok"
    shutil.rmtree(folder.parent)


def test_ab_endpoint_of_the_served_app(client, served_titok):
    refreshed = client.predict("default", api_name="/ab-b_refresh_models")
    assert served_titok in [c[1] for c in refreshed["choices"]]
    view, _curve, budget, status, upload = client.predict("coffee", "default", served_titok, 6, 1.0, 0,
                                                          api_name="/ab_sample")
    data = _ab_data(view)
    assert data["steps"] == 6
    assert (data["a"]["own_steps"], data["b"]["own_steps"]) == (6, 1)
    assert data["a"]["index"] == [0, 1, 2, 3, 4, 5] and data["b"]["index"] == [0] * 6
    assert "64 tokens × 10 bits = 640 bits" in budget and "32 tokens × 12 bits = 384 bits" in budget
    assert "resized to 64 x 64" in status and upload is None
    # the same image again with 3 steps: the slider's range follows
    view, *_ = client.predict("default", served_titok, 3, 1.0, 0, api_name="/ab_compare")
    assert _ab_data(view)["steps"] == 3


def test_ab_endpoint_refuses_a_bad_image(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bad)), "default", "default", 2, 1.0, 0, api_name="/ab_upload")


def test_the_embedded_titok_is_offered_everywhere_and_starts_as_b(workspace, tiny_model_dir, photo, tmp_path):
    """The default's TiTok baseline (a folder outside the workspace) is a tokenizer choice of its own, loads through
    the registry's teacher, is tokenizer B of the A/B screen first, and an Evaluate job finds its files."""
    from workbench.io.workspace import Workspace
    from workbench.services.evaluations import model_path
    from workbench.services.model_registry import TITOK_CHOICE
    from workbench.services.one_step import choice_family

    baseline = save_tiny_titok(tmp_path / "assets" / "titok")
    reg = ModelRegistry(Workspace.create(workspace), tiny_model_dir, teacher=workspace / "checkpoints" / "teacher",
                        default_generator=None, titok=baseline)
    choices = reg.choices(TOKENIZERS)
    assert ("embedded TiTok (one step)", TITOK_CHOICE) in choices and default_b(reg) == TITOK_CHOICE
    loaded = reg.tokenizer(TITOK_CHOICE)
    assert loaded.label == "embedded TiTok" and loaded.tokenizer.info.family == "titok"
    assert choice_family(reg, TITOK_CHOICE) == "titok" and model_path(reg, TITOK_CHOICE) == ("embedded TiTok", baseline)
    result = CompareService(reg).compare("default", TITOK_CHOICE, photo, DecodeSettings(4, 1.0, 0))
    assert result.b.own_steps == 1 and len(result.b.psnr) == 4 and len(set(result.b.psnr)) == 1  # held
    # without the folder nothing is offered and asking for it says why
    absent = ModelRegistry(Workspace.create(workspace), tiny_model_dir, teacher=workspace / "checkpoints" / "teacher",
                           default_generator=None, titok=tmp_path / "nowhere")
    assert TITOK_CHOICE not in [value for _, value in absent.choices(TOKENIZERS)]
    with pytest.raises(ModelUnavailable, match="no embedded TiTok"):
        absent.tokenizer(TITOK_CHOICE)
