"""Backend of the app without a browser: workspace guard, model registry, decode cache, renders, forms."""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.pixel_baselines import thumbnail_psnr
from core import SFTok, create_config, load_pretrained, save_pretrained
from trainers.data.photos import PHOTO_SETS
from tests.app_fixtures import save_tiny_model
from workbench.services.decoding import (COMMITS_RIGHT, TEACHER_CONTEXT_PSNR, DecodeService, DecodeSettings, SettingsError,
                                         TraceExpired, reconstruct_trace)
from workbench.io.images import image_to_tensor, prepare_image, tensor_to_uint8
from workbench.services.model_registry import COMPARISON_CHOICE, DEFAULT_GENERATOR_DIR, ModelRegistry, ModelUnavailable
from workbench.io.workspace import PathRefused, Workspace
from workbench.services.step_pictures import COMMITTED, MASKED, NEW, VIRIDIS_LUT, grid_image, heat_image, steps_gif
from workbench.services.reconstruction import edit_token, nearest_codes, reconstruct_file
from workbench.ui.components.plots import step_curve
from workbench.ui.components.step_scrubber import curve_note
from workbench.services.training_form import FormError, LaunchForm, parse_extra, parse_grid, shard_spec


@pytest.fixture()
def workspace(tmp_path):
    return Workspace.create(tmp_path / "ws")


@pytest.fixture()
def service(workspace, tiny_model_dir):
    return DecodeService(ModelRegistry(workspace, tiny_model_dir, teacher=None, default_generator=None))


# -- workspace guard ---------------------------------------------------------------------------------
def test_paths_outside_the_workspace_are_refused(workspace, tmp_path):
    (workspace.root / "a").mkdir()
    assert workspace.resolve("a") == workspace.root / "a"
    for bad in ("../", "a/../../etc", "/etc/passwd", str(tmp_path)):
        with pytest.raises(PathRefused, match="outside the workspace"):
            workspace.resolve(bad)
    os.symlink(tmp_path, workspace.root / "escape")
    with pytest.raises(PathRefused, match="outside the workspace"):
        workspace.resolve("escape")
    with pytest.raises(PathRefused, match="does not exist"):
        workspace.resolve("missing")
    with pytest.raises(PathRefused, match="NUL"):
        workspace.resolve("a\x00b")


def test_model_folders_are_listed_by_type(workspace, tiny_model_dir):
    shutil.copytree(tiny_model_dir, workspace.root / "runs" / "r1" / "model")
    (workspace.root / "junk").mkdir()
    (workspace.root / "junk" / "config.json").write_text("{not json")
    assert workspace.model_folders(("sftok",)) == [workspace.root / "runs" / "r1" / "model"]
    assert workspace.model_folders(("generator",)) == []


# -- model registry ----------------------------------------------------------------------------------
def test_registry_messages(workspace, tiny_model_dir, tmp_path):
    missing = ModelRegistry(workspace, tmp_path / "nowhere", teacher=None)
    with pytest.raises(ModelUnavailable, match="make default-model"):
        missing.get("default")
    reg = ModelRegistry(workspace, tiny_model_dir, teacher=None)
    with pytest.raises(ModelUnavailable, match="outside the workspace"):
        reg.get("../../etc")
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        reg.get("someone/some-model")
    (workspace.root / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="not a saved model folder"):
        reg.get("empty")


def test_comparison_model_is_offered_beside_the_default_only_when_it_ships(workspace, tiny_model_dir, tmp_path):
    twin = save_tiny_model(tmp_path / "sftok-vanilla", seed=7)
    reg = ModelRegistry(workspace, tiny_model_dir, teacher=None, comparison=twin)
    assert reg.choices()[:2] == [("embedded default (sftok)", "default"),
                                 ("embedded comparison (sftok-vanilla)", COMPARISON_CHOICE)]
    default, comparison = reg.get("default"), reg.get(COMPARISON_CHOICE)
    assert comparison.label == "embedded comparison" and comparison.key != default.key
    ids = torch.arange(64).view(1, 64) % 1024
    assert not torch.equal(default.model.decode_tokens(ids), comparison.model.decode_tokens(ids))  # another model
    for absent in (None, tmp_path / "nowhere"):
        reg = ModelRegistry(workspace, tiny_model_dir, teacher=None, comparison=absent)
        assert COMPARISON_CHOICE not in [value for _, value in reg.choices()]
        with pytest.raises(ModelUnavailable, match="no embedded comparison model"):
            reg.get(COMPARISON_CHOICE)


def test_stage1_model_without_teacher_says_what_is_missing(workspace, tmp_path):
    save_pretrained(SFTok(create_config("tiny", has_pixel_head=False)), workspace.root / "stage1")
    reg = ModelRegistry(workspace, tmp_path / "nowhere", teacher=tmp_path / "no-teacher")
    with pytest.raises(ModelUnavailable, match="no pixel head.*no-teacher"):
        reg.get("stage1")


def test_registry_caches_and_reloads_rewritten_weights(workspace, tiny_model_dir):
    folder = workspace.root / "m"
    shutil.copytree(tiny_model_dir, folder)
    reg = ModelRegistry(workspace, tiny_model_dir, teacher=None)
    first = reg.get("m")
    assert reg.get("m") is first
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert reg.get("m") is not first


# -- decoding ----------------------------------------------------------------------------------------
def test_settings_are_validated():
    assert DecodeSettings(8.0, "1.5", 3) == DecodeSettings(8, 1.5, 3)
    for bad, field in ((dict(num_steps=0), "steps"), (dict(num_steps=33), "steps"), (dict(num_steps=2.5), "steps"),
                       (dict(temperature=-1), "temperature"), (dict(seed=-1), "seed")):
        with pytest.raises(SettingsError, match=field):
            DecodeSettings(**bad)


def test_trace_matches_the_model_and_is_cached(service, sample_dir, tiny_model_dir):
    settings = DecodeSettings(8, 1.0, 7)
    rec = reconstruct_file(service, "default", sample_dir / "chelsea.png", settings)
    trace = rec.trace
    assert trace.num_steps == 8 and trace.grid_side == 16 and trace.previews.shape == (8, 64, 64, 3)
    # the official N=8 schedule on 256 slots: 21, 21, 21, 23, 25, 28, 35, 82 newly committed
    assert [trace.committed_at(s) for s in range(8)] == [21, 21, 21, 23, 25, 28, 35, 82]
    assert trace.masked_after(7) == 0 and len(rec.encoded) == 64
    # same codes as SFTok's own decode with that seed; the final image is SFTok.reconstruct up to
    # one grey level (the previews go through the pixel head as a batch of 8, not 1)
    model = load_pretrained(tiny_model_dir)
    image = image_to_tensor(prepare_image(sample_dir / "chelsea.png", 64).image)
    ids = model.encode(image)[1]["min_encoding_indices"]
    steps = model.decode_steps(ids, 8, 1.0, torch.Generator().manual_seed(7))
    assert np.array_equal(trace.ids_out, torch.cat([s.ids_out for s in steps]).numpy())
    expected = tensor_to_uint8(model.reconstruct(image, 8, 1.0, torch.Generator().manual_seed(7)))[0]
    assert np.abs(trace.final.astype(int) - expected.astype(int)).max() <= 1
    assert set(trace.metrics) == {"PSNR (dB)", "SSIM"} and trace.metrics["PSNR (dB)"].shape == (8,)
    # model-free scale: the input rebuilt from its own mean colour and 4x4 thumbnail
    assert trace.thumbnail_psnr == pytest.approx({s: float(thumbnail_psnr(image, s)[0]) for s in (1, 4)})
    assert 5 < trace.thumbnail_psnr[1] < trace.thumbnail_psnr[4] < 60
    decodes = service.decodes
    again = reconstruct_file(service, "default", sample_dir / "chelsea.png", settings)
    assert service.decodes == decodes and again.trace_key == rec.trace_key
    other = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(8, 1.0, 8))
    assert service.decodes == decodes + 1 and other.trace_key != rec.trace_key
    with pytest.raises(TraceExpired):
        service.get("no-such-key")


class FixedCodesTeacher:
    """A stand-in teacher whose codes are given: the model's own final decode, optionally shifted."""

    def __init__(self, codes: torch.Tensor, codebook_size: int) -> None:
        self.codes, self.config = codes, dataclasses.make_dataclass("Cfg", ["codebook_size"])(codebook_size)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.codes


def test_trace_with_a_teacher_measures_each_step_with_the_teachers_codes(sample_dir, tiny_model_dir):
    """Committed codes never change, so with the model's own final codes as the teacher's the teacher-context
    PSNR is its own curve and every commit is right; with every code shifted, none is and steps 2-8 move."""
    model = load_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        model.decoder.ffn[2].weight.mul_(30.0)  # peaked logits, so a changed context shows in the soft render
    image = prepare_image(sample_dir / "chelsea.png", 64).image
    settings = DecodeSettings(8, 1.0, 7)
    plain = reconstruct_trace(model, image, settings)
    assert set(plain.metrics) == {"PSNR (dB)", "SSIM"}
    vocab = model.config.proxy_vocab_size
    own = FixedCodesTeacher(torch.as_tensor(plain.ids_out[-1:]).long(), vocab)
    same = reconstruct_trace(model, image, settings, teacher=own)
    assert list(same.metrics) == ["PSNR (dB)", "SSIM", TEACHER_CONTEXT_PSNR, COMMITS_RIGHT]
    np.testing.assert_allclose(same.metrics[TEACHER_CONTEXT_PSNR], same.metrics["PSNR (dB)"], atol=1e-4)
    assert same.metrics[COMMITS_RIGHT].tolist() == [1.0] * 8
    shifted = reconstruct_trace(model, image, settings, teacher=FixedCodesTeacher(own.codes.add(1) % vocab, vocab))
    assert shifted.metrics[COMMITS_RIGHT].tolist() == [0.0] * 8
    gap = np.abs(shifted.metrics[TEACHER_CONTEXT_PSNR] - shifted.metrics["PSNR (dB)"])
    assert gap[0] < 1e-4 and (gap[1:] > 5e-5).all()
    # a teacher of another codebook is not this model's: no teacher curve rather than a wrong one
    assert set(reconstruct_trace(model, image, settings, teacher=FixedCodesTeacher(own.codes, vocab * 2)).metrics) \
        == {"PSNR (dB)", "SSIM"}
    # the curve puts both PSNR lines on the left axis, the other two on the right
    figure = step_curve(same)
    assert [t["yaxis"] for t in figure["data"]] == ["y", "y2", "y", "y2"]
    assert figure["layout"]["yaxis2"]["overlaying"] == "y" and figure["data"][2]["line"]["dash"] == "dash"


def test_token_surgery_changes_only_what_was_edited(service, sample_dir):
    settings = DecodeSettings(4, 0.0, 0)
    base = reconstruct_file(service, "default", sample_dir / "coffee.png", settings)
    tokens = edit_token(base.encoded, 5, (base.encoded[5] + 1) % 1024, 1024)
    edited = reconstruct_file(service, "default", sample_dir / "coffee.png", settings, tokens=tokens)
    assert edited.encoded == base.encoded
    assert [i for i, (a, b) in enumerate(zip(edited.trace.tokens, base.encoded)) if a != b] == [5]
    assert edited.trace_key != base.trace_key
    # the decoder saw a different latent: its first-step confidences change (same seed, same schedule)
    assert np.abs(edited.trace.confidence[0] - base.trace.confidence[0]).max() > 0
    with pytest.raises(SettingsError, match="position"):
        edit_token(base.encoded, 64, 0, 1024)
    with pytest.raises(SettingsError, match="code"):
        edit_token(base.encoded, 0, 1024, 1024)
    model = service.registry.get("default").model
    near = nearest_codes(model, 3, 4)
    book = model.quantize.codebook()
    sims = (book @ book[3]).tolist()
    sims[3] = -2
    assert [c for c, _ in near] == list(np.argsort(sims)[::-1][:4])


def test_generation_trace(service, tmp_path):
    from core import GENERATOR_PRESETS, MaskGITGenerator

    torch.manual_seed(0)
    save_pretrained(MaskGITGenerator(GENERATOR_PRESETS["tiny"]), service.registry.workspace.root / "gen")
    key, trace = service.generate("gen", "default", 3, DecodeSettings(8, 1.0, 0), guidance_scale=2.0)
    assert trace.grid_side == 8 and trace.num_steps == 8 and trace.previews.shape == (8, 64, 64, 3)
    # the official 64-slot schedule: 58, 53, 48, 42, 36, 29, 20, then 0 left masked
    assert [trace.masked_after(s) for s in range(8)] == [58, 53, 48, 42, 36, 29, 20, 0]
    assert np.array_equal(trace.final, trace.previews[-1])
    assert trace.metrics["committed fraction"][-1] == 1.0
    with pytest.raises(SettingsError, match="class"):
        service.generate("gen", "default", 16, DecodeSettings(), 1.0)
    with pytest.raises(ModelUnavailable, match="no embedded default generator"):
        service.generate("default", "default", 0, DecodeSettings(), 1.0)
    with pytest.raises(ModelUnavailable, match="no embedded default generator"):  # nothing picked in the UI
        service.generate("", "default", 0, DecodeSettings(), 1.0)
    shutil.copytree(service.registry.default_model, service.registry.workspace.root / "tok")
    with pytest.raises(ModelUnavailable, match="holds a 'sftok' model, this screen needs a 'generator' model"):
        service.generate("tok", "default", 0, DecodeSettings(), 1.0)


def test_embedded_default_generator_is_offered_first_with_its_class_names(workspace, tiny_model_dir):
    registry = ModelRegistry(workspace, tiny_model_dir, teacher=None, default_generator=DEFAULT_GENERATOR_DIR)
    assert registry.choices("generator")[0] == ("embedded default generator", "default")
    names = registry.class_names("default")
    # one class per training photo of the photo set it was trained on, in the set's order
    assert tuple(names) in {photos.train for photos in PHOTO_SETS.values()} and names[7] == "brick"
    assert registry.class_names("nowhere/at-all") == []  # unknown choices never raise here
    _, trace = DecodeService(registry).generate("default", "default", 9, DecodeSettings(8, 1.0, 0), 4.5)
    assert trace.num_steps == 8 and trace.final.shape == (64, 64, 3)


# -- renders -----------------------------------------------------------------------------------------
def test_grid_and_heat_images(service, sample_dir):
    trace = reconstruct_file(service, "default", sample_dir / "astronaut.png", DecodeSettings(8, 1.0, 0)).trace
    img = grid_image(trace, 0)
    assert img.shape == (256, 256, 3)
    cells = img[::16, ::16].reshape(-1, 3)  # top-left pixel of each 16 px cell
    is_new = (cells == NEW).all(1)
    assert is_new.sum() == 21 and (cells == MASKED).all(1).sum() == 235
    assert np.array_equal(is_new, trace.newly_committed[0])
    later = grid_image(trace, 1)[::16, ::16].reshape(-1, 3)
    assert (later == COMMITTED).all(1).sum() == 21 and (later == NEW).all(1).sum() == 21
    heat = heat_image(trace, 0, "confidence")[::16, ::16].reshape(-1, 3)
    idx = np.clip(trace.confidence[0] * 255, 0, 255).astype(int)
    assert np.array_equal(heat, VIRIDIS_LUT[idx])
    with pytest.raises(ValueError, match="unknown kind"):
        heat_image(trace, 0, "nope")
    gif = Image.open(__import__("io").BytesIO(steps_gif(trace)))
    assert gif.n_frames == 8 and gif.size == (192 * 3 + 16, 192)


# -- training form -----------------------------------------------------------------------------------
def test_training_form_maps_fields_to_overrides(workspace):
    from trainers.data.default_dataset import build_default_dataset

    build_default_dataset(workspace.root / "data", image_size=64, train_crops=8, val_crops=4)
    form = LaunchForm(stage="2", dataset="data", max_steps=40, lr=3e-4, sfvr_enabled=False, replace_prob=0.5,
                      extra="# note\nema=false\n")
    out = form.overrides(workspace, resolve_model=lambda c: c)
    assert "sfvr.enabled=false" in out and "sfvr.replace_prob=0.5" in out and "optim.lr=0.0003" in out
    assert out[-1] == "ema=false" and "max_steps=40" in out
    shards = [o for o in out if o.startswith("data.train_shards=")][0]
    assert shards == f"data.train_shards={workspace.root / 'data' / 'train-000000.tar'}"
    assert shard_spec(["/d/a.tar", "/d/b.tar"]) == "/d/{a.tar,b.tar}"
    with pytest.raises(FormError, match="dataset"):
        LaunchForm().overrides(workspace)
    with pytest.raises(PathRefused):
        LaunchForm(dataset="../..").overrides(workspace)
    with pytest.raises(FormError, match="line 1"):
        parse_extra("no equals sign")
    assert parse_grid("optim.lr=1e-4, 3e-4\nsfvr.enabled=true,false") == {"optim.lr": [1e-4, 3e-4],
                                                                         "sfvr.enabled": [True, False]}


def test_curve_note_places_the_last_step_against_the_image_thumbnails(service, sample_dir):
    trace = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(4, 1.0, 0)).trace

    def note(psnr: list[float], thumbnails: dict[int, float]) -> str:
        return curve_note(dataclasses.replace(trace, metrics={"PSNR (dB)": np.array(psnr)}, thumbnail_psnr=thumbnails))

    below = note([15.0, 14.0], {1: 16.0, 4: 20.0})
    assert "PSNR peaks at step 1 (15.00 dB) and falls to 14.00 dB" in below
    assert "from its mean colour 16.00 dB, a 4x4 thumbnail 20.00 dB." in below
    assert "The last step (14.00 dB) is further from the image than its mean colour" in below
    above = note([17.0, 18.0], {1: 16.0, 4: 20.0})
    assert "peaks" not in above and "further" not in above and "mean colour 16.00 dB" in above
    assert note([17.0, 18.0], {}) == ""  # nothing to compare with (a generated image has no input)


def test_curve_note_says_what_right_commits_would_give(service, sample_dir):
    trace = reconstruct_file(service, "default", sample_dir / "chelsea.png", DecodeSettings(4, 1.0, 0)).trace
    counts = [trace.committed_at(s) for s in range(4)]

    def note(own: list[float], forced: list[float], right: list[float]) -> str:
        metrics = {"PSNR (dB)": np.array(own), TEACHER_CONTEXT_PSNR: np.array(forced), COMMITS_RIGHT: np.array(right)}
        return curve_note(dataclasses.replace(trace, metrics=metrics, thumbnail_psnr={}))

    held_back = note([15.0, 15.0, 15.1, 15.1], [15.0, 16.0, 17.0, 18.5], [0.5, 0.0, 0.0, 0.0])
    share = 0.5 * counts[0] / sum(counts)
    assert f"{share:.0%} of its committed codes are the teacher's" in held_back
    assert "moves +0.10 dB; with the teacher's codes at the same committed slots it would move +3.50 dB" in held_back
    assert "its own wrong commits are what hold them back" in held_back
    deaf = note([15.0, 14.9, 14.9, 14.9], [15.0, 15.0, 15.0, 15.05], [0.1, 0.1, 0.1, 0.1])
    assert "10% of its committed" in deaf and "gets little from revealed codes even when they are right" in deaf
    both = note([15.0, 15.5, 16.0, 16.5], [15.0, 15.5, 16.0, 16.55], [1.0, 1.0, 1.0, 1.0])
    assert both.endswith("it would move +1.55 dB (dashed line).")


def test_image_change_of_an_edit_in_numbers():
    """PSNR (peak 255) and max |delta| of known differences: one channel of one pixel of a 4x4 image up by 3."""
    from workbench.services.reconstruction import image_change

    before = np.zeros((4, 4, 3), np.uint8)
    after = before.copy()
    after[1, 2, 0] = 3
    change = image_change(before, after)
    # MSE = 3^2 / 48 values = 0.1875; PSNR = 10 log10(255^2 / 0.1875) = 10 log10(346800)
    assert change.psnr_db == pytest.approx(55.40079, abs=1e-5)
    assert (change.max_abs_delta, change.changed_pixels, change.pixels, change.identical) == (3, 1, 16, False)
    darker = image_change(np.full((2, 2, 3), 200, np.uint8), np.full((2, 2, 3), 190, np.uint8))  # no uint8 wrap
    assert darker.max_abs_delta == 10 and darker.psnr_db == pytest.approx(10 * np.log10(255 ** 2 / 100))
    same = image_change(before, before.copy())
    assert same.identical and same.psnr_db == float("inf") and same.changed_pixels == 0
    with pytest.raises(ValueError, match="shapes differ"):
        image_change(before, np.zeros((4, 4), np.uint8))


def test_token_surgery_measures_its_edit_against_the_unedited_decode(service, sample_dir):
    from workbench.services.reconstruction import image_change

    settings = DecodeSettings(4, 0.0, 0)
    base = reconstruct_file(service, "default", sample_dir / "coffee.png", settings)
    assert base.edit_change is None
    tokens = edit_token(base.encoded, 5, (base.encoded[5] + 1) % 1024, 1024)
    edited = reconstruct_file(service, "default", sample_dir / "coffee.png", settings, tokens=tokens)
    assert edited.edit_change == image_change(base.trace.final, edited.trace.final)
    assert 0 < edited.edit_change.max_abs_delta <= 255 and edited.edit_change.pixels == 64 * 64
