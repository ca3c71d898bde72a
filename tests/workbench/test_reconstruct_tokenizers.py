"""Reconstruct with every tokenizer family: TiTok, the MaskGIT-VQGAN teacher and ReVQ decode in one pass and show
as a one-step trace (known answers: the tokenizer's own reconstruction, TiTok's softmax confidence and entropy),
token surgery within each codebook, the served app's endpoint on a TiTok, and Information refusing one-step
tokenizers with the reason."""
from __future__ import annotations

import html
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.tokenizer import ReVQTokenizer
from tests.app_fixtures import named, save_tiny_teacher, save_tiny_titok
from tests.core.test_revq import TINY as REVQ_TINY
from tests.core.test_revq import tiny_dcae
from tests.core.test_revq import build as build_revq
from workbench.io.images import image_to_tensor, prepare_image, tensor_to_uint8
from workbench.io.workspace import Workspace
from workbench.services.decoding import COMMITS_RIGHT, DecodeService, DecodeSettings, SettingsError
from workbench.services.model_registry import TEACHER_CHOICE, LoadedTokenizer, ModelRegistry, ModelUnavailable
from workbench.services.one_step import INFORMATION_SFTOK_ONLY, ONE_STEP, choice_family, refuse_one_step
from workbench.services.reconstruction import edit_token, image_change, nearest_codes, reconstruct_file
from workbench.services.step_frames import make_frames
from workbench.services.step_pictures import NOT_MEASURED, grid_image, heat_image, steps_gif
from workbench.ui.components.step_scrubber import scrubber_html

TITOK = "checkpoints/titok"


def save_peaked_titok(folder: Path) -> Path:
    """The tiny random TiTok with a louder latent input and proxy head: its official N(0, 0.02) init predicts all
    but uniform codes (confidence 1/256 everywhere) that no token edit moves; these vary per cell (0.08..0.99) and
    one edited token changes the picture."""
    from core import load_pretrained, save_pretrained

    save_tiny_titok(folder)
    model = load_pretrained(folder).eval()
    with torch.no_grad():
        model.decoder.decoder_embed.weight.mul_(30.0)
        model.decoder.ffn[2].weight.mul_(100.0)
    return save_pretrained(model, folder)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rec-tokenizers")
    save_peaked_titok(root / "checkpoints" / "titok")
    save_tiny_teacher(root / "checkpoints" / "teacher")
    return root


@pytest.fixture(scope="module")
def registry(tokenizer_registry) -> ModelRegistry:
    return tokenizer_registry


@pytest.fixture(scope="module")
def service(registry) -> DecodeService:
    return DecodeService(registry)


def own_reconstruction(tokenizer, photo: Path, ids: torch.Tensor | None = None) -> np.ndarray:
    """``tok.decode(tok.encode(x))`` (or of ``ids``) as the uint8 picture the screen shows."""
    x = image_to_tensor(prepare_image(photo, tokenizer.info.image_size).image)
    with torch.no_grad():
        return tensor_to_uint8(tokenizer.decode(tokenizer.encode(x) if ids is None else ids))[0]


# -- TiTok: its proxy codes, with confidence and entropy from its logits -----------------------------------------
def test_titok_decodes_to_a_one_step_trace_of_its_proxy_codes(service, registry, photo):
    rec = reconstruct_file(service, TITOK, photo, DecodeSettings(8, 1.0, 0))
    trace, tok = rec.trace, registry.tokenizer(TITOK).tokenizer
    assert (trace.num_steps, trace.total_steps, trace.complete, trace.steps_note) == (1, 1, True, ONE_STEP)
    assert np.array_equal(trace.final, own_reconstruction(tok, photo)) and np.array_equal(trace.previews[0], trace.final)
    x = image_to_tensor(prepare_image(photo, 64).image)
    ids = tok.encode(x)
    assert rec.encoded == tuple(ids[0].tolist()) and len(rec.encoded) == 32
    probs = torch.softmax(tok.proxy_logits(ids)[0].float(), dim=-1)  # (256 cells, 256 teacher codes)
    assert trace.grid_side == 16 and trace.mask_id == 256
    np.testing.assert_allclose(trace.confidence[0], probs.max(dim=-1).values.numpy(), atol=1e-6)
    assert np.array_equal(trace.ids_out[0], probs.argmax(dim=-1).numpy())
    entropy = -(probs * probs.clamp_min(1e-30).log2()).sum(dim=-1)
    np.testing.assert_allclose(trace.entropy[0], entropy.numpy(), atol=1e-4)
    assert trace.newly_committed.all() and (trace.ids_in == 256).all() and trace.masked_after(0) == 0
    assert trace.cell_scores and "argmax" in trace.grid_label
    assert 0.05 < trace.confidence.min() and trace.confidence.max() > 0.9  # peaked and varied: the check has teeth
    # its argmax codes against the teacher's codes of the same image: a share, on the curve and in the facts
    teacher_codes = registry.teacher().encode(x)[0].numpy()
    assert trace.metrics[COMMITS_RIGHT][0] == pytest.approx(float((teacher_codes == trace.ids_out[0]).mean()))
    assert set(trace.metrics) == {"PSNR (dB)", "SSIM", COMMITS_RIGHT} and trace.metrics["PSNR (dB)"].shape == (1,)
    assert "ignored" in trace.settings_note and "8 asked" in trace.settings_note and trace.precision == "fp32"


def test_one_step_settings_are_ignored_and_cached_once(service, photo):
    first = reconstruct_file(service, TITOK, photo, DecodeSettings(8, 1.0, 0))
    decodes = service.decodes
    other = reconstruct_file(service, TITOK, photo, DecodeSettings(3, 0.2, 5, "bf16"))
    assert service.decodes == decodes and other.trace_key == first.trace_key  # nothing of them changes the decode
    assert np.array_equal(other.trace.final, first.trace.final)
    assert "3 asked" in other.trace.settings_note and "bf16 is SFTok's decoding mode" in other.trace.precision_note
    assert first.trace.precision_note == ""


def test_titok_frames_and_scrubber_show_one_step(service, photo):
    trace = reconstruct_file(service, TITOK, photo, DecodeSettings(8, 1.0, 0)).trace
    frames = make_frames(trace)
    assert frames.num_steps == 1 and len(frames.grid) == len(frames.preview) == 1
    assert frames.info[0].startswith("<b>Step 1 / 1</b> · 1 step: one-step decoder · 256 cells, all at once")
    assert f"mean confidence {trace.confidence[0].mean():.3f}" in frames.info[0] and "Gumbel" not in frames.info[0]
    view = scrubber_html("rec", frames, "confidence", "Proxy-code grid")
    assert "max='1'" in view and "· 1 step: one-step decoder" in view and "n/a" not in view
    assert "argmax of its one pass" in view and "Proxy-code grid" not in view  # the trace's own caption
    assert heat_image(trace, 0).shape == (256, 256, 3) and not (heat_image(trace, 0) == NOT_MEASURED).all()
    assert steps_gif(trace)[:6] == b"GIF89a"


def test_token_surgery_on_titok(service, registry, photo):
    settings = DecodeSettings(8, 1.0, 0)
    base = reconstruct_file(service, TITOK, photo, settings)
    tokens = edit_token(base.encoded, 3, (base.encoded[3] + 1000) % 4096, 4096)
    edited = reconstruct_file(service, TITOK, photo, settings, tokens=tokens)
    assert edited.encoded == base.encoded and tuple(edited.trace.tokens) == tokens
    tok = registry.tokenizer(TITOK).tokenizer
    expected = own_reconstruction(tok, photo, torch.tensor([tokens]))
    assert np.array_equal(edited.trace.final, expected)
    assert edited.edit_change == image_change(base.trace.final, expected) and not edited.edit_change.identical
    with pytest.raises(SettingsError, match=r"code: must be a whole number in 0..4095"):
        edit_token(base.encoded, 0, 4096, 4096)
    with pytest.raises(ValueError, match=r"expected shape \(B, 32\)"):  # the service checks ids it is handed too
        reconstruct_file(service, TITOK, photo, settings, tokens=tokens[:-1])
    with pytest.raises(ValueError, match=r"values must lie in \[0, 4096\)"):
        reconstruct_file(service, TITOK, photo, settings, tokens=(4096, *tokens[1:]))
    near = nearest_codes(tok, tokens[3], 4)
    book = torch.nn.functional.normalize(tok.codebook(), dim=-1)
    sims = book @ book[tokens[3]]
    sims[tokens[3]] = -2
    assert [c for c, _ in near] == sims.topk(4).indices.tolist()


# -- the teacher: its own codes, no distribution -------------------------------------------------------------------
def test_teacher_choice_shows_its_own_codes(service, registry, photo):
    rec = reconstruct_file(service, TEACHER_CHOICE, photo, DecodeSettings(8, 1.0, 0))
    trace, tok = rec.trace, registry.tokenizer(TEACHER_CHOICE).tokenizer
    assert trace.num_steps == 1 and trace.grid_side == 16 and len(rec.encoded) == 256
    assert np.array_equal(trace.final, own_reconstruction(tok, photo))
    x = image_to_tensor(prepare_image(photo, 64).image)
    assert np.array_equal(trace.ids_out[0], tok.encode(x)[0].numpy()) and np.array_equal(trace.tokens, trace.ids_out[0])
    assert (trace.confidence == 1).all() and (trace.entropy == 0).all() and not trace.cell_scores
    assert COMMITS_RIGHT not in trace.metrics  # its own codes: nothing to score against
    frames = make_frames(trace)
    assert "confidence / entropy n/a" in frames.info[0]
    assert (heat_image(trace, 0) == NOT_MEASURED).all()  # not measured: a blank panel, not a uniform heat map
    view = scrubber_html("rec", frames, "entropy", "Proxy-code grid")
    assert "n/a: no distribution per cell" in view and "own codes (16 x 16)" in view
    edited = reconstruct_file(service, TEACHER_CHOICE, photo, DecodeSettings(), tokens=edit_token(rec.encoded, 0, 5, 256))
    assert edited.trace.tokens[0] == 5 and edited.edit_change is not None


# -- ReVQ: no teacher codes; its ids on a grid only when their count is a square ---------------------------------
def revq_registry(workspace: Path, tiny_model_dir: Path, monkeypatch, tokens: int) -> ModelRegistry:
    """A registry that also offers choice "revq": a tiny ReVQ with a tiny diffusers DC-AE."""
    from dataclasses import replace

    registry = ModelRegistry(Workspace.create(workspace), tiny_model_dir, teacher=None, default_generator=None)
    model = build_revq(replace(REVQ_TINY, tokens=tokens), 0)
    model.attach_autoencoder(tiny_dcae(6))
    loaded = LoadedTokenizer(f"revq-{tokens}", "revq", ReVQTokenizer(model))
    real = registry.tokenizer
    monkeypatch.setattr(registry, "tokenizer", lambda choice: loaded if choice == "revq" else real(choice))
    return registry


def test_revq_256_tokens_on_a_grid(workspace, tiny_model_dir, photo, monkeypatch):
    registry = revq_registry(workspace, tiny_model_dir, monkeypatch, 256)
    service = DecodeService(registry)
    rec = reconstruct_file(service, "revq", photo, DecodeSettings(8, 1.0, 0))
    trace, tok = rec.trace, registry.tokenizer("revq").tokenizer
    assert trace.num_steps == 1 and trace.final.shape == (256, 256, 3) and len(rec.encoded) == 256
    assert np.array_equal(trace.final, own_reconstruction(tok, photo))
    assert trace.grid_side == 16 and np.array_equal(trace.ids_out[0], trace.tokens) and trace.mask_id == 64
    assert not trace.cell_scores and "not image positions" in trace.grid_label
    # token surgery within its 64 codes per position; the neighbours come from that position's own codebook
    tokens = edit_token(rec.encoded, 7, (rec.encoded[7] + 1) % 64, 64)
    edited = reconstruct_file(service, "revq", photo, DecodeSettings(), tokens=tokens)
    expected = own_reconstruction(tok, photo, torch.tensor([tokens]))
    assert np.array_equal(edited.trace.final, expected) and tuple(edited.trace.tokens) == tokens
    assert edited.edit_change == image_change(trace.final, expected) and not edited.edit_change.identical
    book = torch.nn.functional.normalize(tok.codebook()[7], dim=-1)
    sims = book @ book[rec.encoded[7]]
    sims[rec.encoded[7]] = -2
    assert [c for c, _ in nearest_codes(tok, rec.encoded[7], 3, 7)] == sims.topk(3).indices.tolist()
    with pytest.raises(SettingsError, match="code: must be a whole number in 0..63"):
        edit_token(rec.encoded, 0, 64, 64)


def test_revq_512_tokens_have_no_grid(workspace, tiny_model_dir, photo, monkeypatch):
    registry = revq_registry(workspace, tiny_model_dir, monkeypatch, 512)
    rec = reconstruct_file(DecodeService(registry), "revq", photo, DecodeSettings(8, 1.0, 0))
    trace = rec.trace
    assert trace.grid_side == 0 and trace.ids_out.shape == (1, 0) and len(rec.encoded) == 512
    assert np.array_equal(trace.final, own_reconstruction(registry.tokenizer("revq").tokenizer, photo))
    assert trace.grid_label == "no grid: ReVQ's 512 tokens do not form a square; its ids are under Token surgery"
    assert (grid_image(trace, 0) == NOT_MEASURED).all() and (heat_image(trace, 0, "entropy") == NOT_MEASURED).all()
    frames = make_frames(trace)
    assert "no grid" in frames.info[0] and math.isfinite(float(trace.metrics["PSNR (dB)"][0]))
    view = html.unescape(scrubber_html("rec", frames, "confidence", "Proxy-code grid"))
    assert "<figcaption>no grid: ReVQ's 512 tokens" in view
    assert steps_gif(trace)[:6] == b"GIF89a"


# -- Information: SFTok only, and why ------------------------------------------------------------------------------
def test_information_refuses_one_step_tokenizers(workspace, registry):
    from workbench.services.analyses import AnalysisService

    assert [choice_family(registry, c) for c in ("default", TITOK, TEACHER_CHOICE, "checkpoints/teacher", "none/x")] \
        == ["sftok", "titok", "maskgit_vqgan", "maskgit_vqgan", None]
    analyses = AnalysisService(registry, Workspace.create(workspace))
    for choice, family in ((TITOK, "TiTok"), (TEACHER_CHOICE, "MaskGIT-VQGAN teacher")):
        with pytest.raises(ModelUnavailable, match=re.escape(f"{choice}: a {family} tokenizer. {INFORMATION_SFTOK_ONLY}")):
            analyses.information(["default", choice], "datasets/none", "val", 2, 2, 2, 1.0, 0)
    refuse_one_step(registry, ["default", ""])  # SFTok passes the check (what it measures is tested elsewhere)


# -- the served app ------------------------------------------------------------------------------------------------
@pytest.fixture()
def served_titok(served_app):
    """A tiny TiTok in the served app's workspace for one test (other tests list that workspace's models)."""
    folder = served_app[0].workspace.root / "rec-test" / "titok"
    save_peaked_titok(folder)
    yield "rec-test/titok"
    shutil.rmtree(folder.parent)


def test_reconstruct_endpoint_on_a_titok(served_app, served_titok):
    import json

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served_app[1], verbose=False, download_files=False)
    listed = client.predict("default", api_name="/rec-model_refresh_models")["choices"]
    assert [served_titok, served_titok] in [[c[1], c[1]] for c in listed]
    out = named(client.predict("coffee", served_titok, 8, 1.0, 0, "confidence", api_name="/reconstruct_sample"))
    frames = json.loads(html.unescape(re.search(r'data-frames="([^"]*)"', out["scrubber"]).group(1)))
    assert frames["steps"] == 1 and frames["info"][0].startswith("<b>Step 1 / 1</b> · 1 step: one-step decoder")
    assert "1 step: one-step decoder" in out["scrubber"] and "resized to 64 x 64" in out["status"]
    assert "TiTok decodes all its ids in one pass: the step count (8 asked)" in out["status"]
    tokens = [int(t) for t in re.findall(r"data-token='(\d+)'", out["tokens"])]
    assert len(tokens) == 32
    edited = named(client.predict(4, (tokens[4] + 1) % 4096, served_titok, 8, 1.0, 0, "confidence",
                                  api_name="/token_surgery"))
    assert f"position 4: {tokens[4]} → {(tokens[4] + 1) % 4096}" in edited["status"]
    assert "Against the unedited decode" in edited["status"]
    assert "Nearest codewords (cosine)" in client.predict(4, api_name="/token_neighbours")
    with pytest.raises(AppError, match="code: must be a whole number in 0..4095"):
        client.predict(1, 4096, served_titok, 8, 1.0, 0, "confidence", api_name="/token_surgery")
