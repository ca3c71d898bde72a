"""The Codebook and Information screens: every event endpoint through gradio_client against the real
app (tiny random model, datasets written into its workspace), and the backend with a teacher."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from core import MaskGITVQGAN, SFTok, create_config, save_pretrained
from workbench.services.analyses import AnalysisService, code_examples, outline_cell, read_samples
from workbench.services.model_registry import ModelRegistry
from workbench.io.workspace import Workspace
from workbench.services.step_pictures import NEW

CB_OUTPUTS = ("status", "summary", "usage", "heat", "top", "book")
INFO_OUTPUTS = ("status", "summary", "bars", "mi_notes", "grids", "trajectory", "trajectory_notes", "gap", "gap_notes")


def figure(plot: dict) -> dict:
    return json.loads(plot["plot"])


def table(frame: dict) -> list[dict]:
    return [dict(zip(frame["headers"], row)) for row in frame["data"]]


def columns(frame: dict) -> dict[str, dict]:
    """A summary table (a row per measure, a column per model or codebook) -> {column: {measure: value}}."""
    headers, rows = frame["headers"], frame["data"]
    assert headers[:2] == ["measure", "unit"]
    return {label: {row[0]: row[i] for row in rows} for i, label in enumerate(headers) if i >= 2}


def units(frame: dict) -> dict[str, str]:
    return {row[0]: row[1] for row in frame["data"]}


@pytest.fixture()
def fresh(served_app) -> Client:
    return Client(served_app[1], verbose=False, download_files=False)


@pytest.fixture(scope="module")
def photo_dataset(served_app) -> str:
    """A folder of five photos in the app's workspace (the 'folder of images' kind of dataset)."""
    import skimage.data

    folder = served_app[0].workspace.root / "datasets" / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    return "datasets/photos"


def test_codebook_usage_map_and_examples(fresh, photo_dataset):
    choices = fresh.predict(None, api_name="/cb_refresh_datasets")
    assert {"datasets/small", "datasets/photos"} <= {c[1] for c in choices["choices"]}
    out = dict(zip(CB_OUTPUTS, fresh.predict("default", "datasets/small", "val", 12, "tokens", api_name="/codebook_usage")))
    (label, row), = columns(out["summary"]).items()  # no teacher in this app: one codebook
    assert label == "SFTok codebook (64 latent tokens)"
    assert row["images"] == 12 and row["tokens counted"] == 12 * 64 and row["size"] == 1024
    assert 0 < row["utilisation"] <= 1 and row["used"] + row["dead (never used)"] == 1024
    assert math.isclose(row["perplexity (2^entropy)"], 2 ** row["entropy"], rel_tol=1e-3)
    # units sit in a column of their own, not in headers squeezed letter by letter
    assert units(out["summary"])["entropy"] == "bits" and units(out["summary"])["utilisation"] == "share of codes"
    assert "12 images" in out["status"] and "Teacher codebook not measured" in out["status"]
    usage = figure(out["usage"])
    assert len(usage["data"][1]["y"]) == 64  # entropy per position
    heat = figure(out["heat"])
    assert np.asarray(heat["data"][0]["z"]).shape[0] == 64

    umap_figure, map_status = fresh.predict("tokens", api_name="/codebook_map")  # streamed: the last update
    umap = figure(umap_figure)
    assert "12 images" in map_status  # the run's status is back once the map is drawn
    points = umap["data"][0]
    assert points["type"] == "scatter" and len(points["x"]) == 1024
    codes, counts = np.asarray(points["customdata"]).T
    assert codes.tolist() == list(range(1024)) and counts.sum() == 12 * 64
    assert "count %{customdata[1]}" in points["hovertemplate"]

    top = table(out["top"])
    code, count = top[0]["code"], top[0]["count"]
    assert count == counts[code] == max(counts)
    gallery, info = fresh.predict(code, "tokens", api_name="/codebook_examples")
    assert len(gallery) == min(count, 12) and f"used {count} times" in info
    assert "has no cell to outline" in info  # a latent token is not marked on the image, and the text says so
    assert all(item["caption"].startswith("token ") and " · val-000000.tar/" in item["caption"] for item in gallery)
    dead = int(np.flatnonzero(counts == 0)[0])
    assert fresh.predict(dead, "tokens", api_name="/codebook_examples")[0] == []
    with pytest.raises(AppError, match=r"code: must be in 0\.\.1023"):
        fresh.predict(1024, "tokens", api_name="/codebook_examples")
    with pytest.raises(AppError, match="no 'teacher' numbers in this run"):
        fresh.predict("teacher", api_name="/codebook_view")
    view = fresh.predict("tokens", api_name="/codebook_view")
    assert table(view[2])[0]["code"] == code

    # a folder of images: keys are file names and examples are re-read from the folder
    out = dict(zip(CB_OUTPUTS, fresh.predict("default", photo_dataset, "val", 100, "tokens", api_name="/codebook_usage")))
    (row,) = columns(out["summary"]).values()
    assert row["images"] == 5 and row["tokens counted"] == 5 * 64
    top = table(out["top"])
    gallery, _ = fresh.predict(top[0]["code"], "tokens", api_name="/codebook_examples")
    assert gallery and all(item["caption"].split(" · ")[1].endswith(".png") for item in gallery)


@pytest.fixture()
def served_titok(served_app):
    """A tiny TiTok in the served app's workspace for one test (other tests list that workspace's models)."""
    import shutil

    from tests.app_fixtures import save_tiny_titok

    folder = served_app[0].workspace.root / "cb-test" / "titok"
    save_tiny_titok(folder)
    yield "cb-test/titok"
    shutil.rmtree(folder.parent)


def test_codebook_usage_of_a_titok(fresh, served_app, served_titok):
    """Any tokenizer choice: a TiTok's 32 tokens of a 4096-code book, counted as its encode_each ids count them."""
    from analysis import iter_image_batches
    from workbench.services.analyses import dataset_sources

    listed = fresh.predict("default", api_name="/cb-model_refresh_models")["choices"]
    assert [f"{served_titok} (TiTok)", served_titok] in listed
    out = dict(zip(CB_OUTPUTS, fresh.predict(served_titok, "datasets/small", "val", 6, "tokens",
                                             api_name="/codebook_usage")))
    (label, row), = columns(out["summary"]).items()
    assert label == "TiTok codebook (32 latent tokens)"
    assert row["images"] == 6 and row["tokens counted"] == 6 * 32 and row["size"] == 4096
    assert "Teacher codebook not measured: the app runs without a teacher" in out["status"]
    ctx = served_app[0]
    tok = ctx.registry.tokenizer(served_titok).tokenizer
    sources = dataset_sources(ctx.workspace, "datasets/small", "val")
    images = next(iter(iter_image_batches(list(sources), 64, 6, 6))).images
    counts = np.bincount(tok.encode_each(images).numpy().ravel(), minlength=4096)
    expected = sorted((int(c) for c in np.flatnonzero(counts)), key=lambda c: (-counts[c], c))[:20]
    assert [(r["code"], r["count"]) for r in table(out["top"])] == [(c, int(counts[c])) for c in expected]
    assert row["used"] == int((counts > 0).sum())
    assert len(figure(out["usage"])["data"][1]["y"]) == 32  # entropy per token position


def test_codebook_rejects_bad_input(fresh):
    with pytest.raises(AppError, match="outside the workspace"):
        fresh.predict("default", "/etc", "val", 4, "tokens", api_name="/codebook_usage")
    with pytest.raises(AppError, match="less than minimum value 1"):
        fresh.predict("default", "datasets/small", "val", 0, "tokens", api_name="/codebook_usage")
    with pytest.raises(AppError, match="not a dataset"):
        fresh.predict("default", "checkpoints", "val", 4, "tokens", api_name="/codebook_usage")
    with pytest.raises(AppError, match="no longer cached"):
        fresh.predict(0, "tokens", api_name="/codebook_examples")  # nothing run in this session


def test_information_one_and_two_models(fresh, served_app):
    out = dict(zip(INFO_OUTPUTS, fresh.predict("default", "", "datasets/small", "val", 4, 12, 4, 1.0, 0, 2,
                                               api_name="/information")))
    (label, row), = columns(out["summary"]).items()
    assert label == "A: embedded default" and len(row) == 13
    assert row["LOO MI, CI low"] <= row["LOO MI"] <= row["LOO MI, CI high"]
    assert units(out["summary"])["LOO MI"] == "bits/slot" and units(out["summary"])["info gain, own codes"] == "bits/image"
    # an interval straddling zero is said in words next to the bars
    assert ("mean MI" in out["mi_notes"] and "not distinguishable from zero" in out["mi_notes"]) == \
        (row["LOO MI, CI low"] <= 0 <= row["LOO MI, CI high"])
    assert "No teacher" in out["status"] and "12 of 256 slots" in out["status"]
    bars = figure(out["bars"])["data"]
    assert len(bars) == 1 and len(bars[0]["x"]) == 12 and np.isfinite(bars[0]["y"]).all()
    assert np.isclose(np.mean(bars[0]["y"]), row["LOO MI"], atol=1e-4)
    grid = np.asarray(figure(out["grids"])["data"][0]["z"], dtype=float)  # None (not measured) -> nan
    assert grid.shape == (16, 16) and np.isfinite(grid).sum() == 12
    trajectory = figure(out["trajectory"])["data"]
    assert all(len(t["x"]) == 4 and np.isfinite(t["y"]).all() for t in trajectory)
    gap = figure(out["gap"])["data"]
    assert [len(t["y"]) for t in gap] == [4, 4, 4] and gap[0]["y"][0] == 0  # no context yet at step 1
    assert out["gap_notes"].startswith("**Reading the self-forcing gap.**") and "own full decode" in out["gap_notes"]
    # side-by-side panels and the bars (whose long title fills the top) keep their legend under the axes, clear of
    # the title; the grids keep it on top
    for name in ("trajectory", "gap", "bars"):
        layout = figure(out[name])["layout"]
        assert layout["title"]["text"] and layout["legend"]["y"] < 0 and layout["legend"]["yanchor"] == "top"
    assert figure(out["grids"])["layout"]["legend"]["y"] > 1
    # does the decoder read revealed codes? three cross-entropies, and a sentence when revealing does not help
    none, most = row["CE hidden, 0% revealed"], row["CE hidden, 90% revealed"]
    assert 0 < none < 20 and 0 < row["CE hidden, 50% revealed"] < 20 and 0 < most < 20
    assert ("does not read revealed codes" in out["trajectory_notes"]) == (none - most < 0.05)

    # a second checkpoint in the workspace appears after a refresh and is measured on the same slots
    torch.manual_seed(5)
    save_pretrained(SFTok(create_config("tiny")).eval(), served_app[0].workspace.root / "checkpoints" / "other")
    choices = fresh.predict("", api_name="/information_refresh_model_b")["choices"]
    assert ["checkpoints/other", "checkpoints/other"] in choices
    out = dict(zip(INFO_OUTPUTS, fresh.predict("default", "checkpoints/other", "datasets/small", "val", 4, 12, 4, 1.0,
                                               0, 2, api_name="/information")))
    models = columns(out["summary"])
    assert list(models) == ["A: embedded default", "B: checkpoints/other"]
    assert models["A: embedded default"]["LOO MI"] != models["B: checkpoints/other"]["LOO MI"]
    bars = figure(out["bars"])["data"]
    assert len(bars) == 2 and bars[0]["x"] == bars[1]["x"]
    with pytest.raises(AppError, match="holds a 'generator' model"):
        fresh.predict("checkpoints/generator", "", "datasets/small", "val", 4, 8, 4, 1.0, 0, 2, api_name="/information")


# -- backend, with a teacher -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher_service(tmp_path_factory, tiny_model_dir) -> AnalysisService:
    from trainers.data.default_dataset import build_default_dataset

    root = tmp_path_factory.mktemp("analysis")
    torch.manual_seed(3)
    teacher = save_pretrained(MaskGITVQGAN(create_config("tiny").teacher).eval(), root / "teacher")
    workspace = Workspace.create(root / "workspace")
    build_default_dataset(workspace.root / "datasets" / "default" / "tiny", image_size=64, train_crops=16, val_crops=8)
    return AnalysisService(ModelRegistry(workspace, tiny_model_dir, teacher), workspace, umap_cache_dir=root / "umap")


def test_teacher_codebook_usage_and_examples(teacher_service):
    _, report = teacher_service.codebook("default", "datasets/default/tiny", "val", 6)
    latent, proxy = report.books["tokens"].stats, report.books["teacher"].stats
    assert latent.num_tokens == 6 * 64 and proxy.num_tokens == 6 * 256 and proxy.codebook_size == 256
    assert report.books["teacher"].grid_side == 16 and report.teacher_note == ""
    assert proxy.position_counts.sum(axis=1).tolist() == [6] * 256  # one code per image at every cell
    code = proxy.most_used[0][0]
    examples = code_examples(report, "teacher", code, limit=4)
    assert len(examples) == min(4, int(proxy.counts[code]))
    for e in examples:
        row, col = divmod(e.position, 16)
        assert e.caption.startswith(f"cell ({row}, {col}) · ") and e.image.shape == (192, 192, 3)
        assert (e.image[row * 12, col * 12 + 6] == NEW).all()  # the cell's top edge is outlined


def test_teacher_information_targets(teacher_service):
    _, report = teacher_service.information(["default"], "datasets/default/tiny", "val", 3, 8, 3, 0.5, 1, 2)
    (m,) = report.models
    assert m.target_source == "teacher" and m.loo.per_image_bits.shape == (3, 8)
    assert np.isfinite(m.loo.bits).all() and len(m.trajectory.rows) == 3 and len(m.gap.rows) == 3
    assert sorted(set(report.positions.tolist())) == report.positions.tolist() and report.positions.max() < 256


def test_read_samples_and_outline(tmp_path):
    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 20), (10, 200, 30)).save(folder / "a.png")
    found = read_samples([str(tmp_path / "imgs")], ["sub/a.png", "../escape.png", "missing.png"], 16)
    assert list(found) == ["sub/a.png"] and found["sub/a.png"].shape == (16, 16, 3)
    assert found["sub/a.png"][8, 8].tolist() == [10, 200, 30]
    ring = outline_cell(np.zeros((16, 16, 3), np.uint8), position=5, grid_side=4, target=64)
    assert ring.shape == (64, 64, 3)
    cell = ring[16:32, 16:32]  # row 1, col 1 at 16 px per cell
    assert (cell[0] == NEW).all() and (cell[8, 8] == 0).all() and (ring[0, 0] == 0).all()


def test_a_flat_reveal_curve_is_said_in_words_and_a_falling_one_is_not():
    from types import SimpleNamespace

    from workbench.services.reading_notes import reveal_note

    flat = reveal_note(SimpleNamespace(label="A", reveal_bits=(6.76, 6.77, 6.87)))
    assert flat == ("A: with 90% of the target codes revealed, its cross-entropy on the rest is 6.87 bits/slot against "
                    "6.76 with none revealed: this decoder does not read revealed codes, so its later decode steps "
                    "gain little from the codes committed earlier. Self-forcing (SFVR) with every context slot its "
                    "own first guess teaches exactly this: those guesses are computed from the same tokens, so they "
                    "tell nothing about the true codes beyond them; reading them can save the decoder computation, never "
                    "add information.")
    assert reveal_note(SimpleNamespace(label="B", reveal_bits=(6.76, 6.0, 5.1))) is None
    assert reveal_note(SimpleNamespace(label="C", reveal_bits=())) is None  # not measured


def test_trajectory_notes_say_what_a_negative_or_flat_gain_means():
    from types import SimpleNamespace

    from workbench.services.reading_notes import trajectory_notes

    def row(step, own, teacher):
        return SimpleNamespace(step=step, info_gain_bits_per_image=own, teacher_gain_bits_per_image=teacher,
                               block_tc_bits=0.2, block_tc_sem=0.05)

    model = SimpleNamespace(label="A", reveal_bits=(6.0, 5.0, 4.0), trajectory=SimpleNamespace(
        rows=(row(0, 0.0, 0.0), row(1, -0.4, 2.0), row(2, 0.3, 0.0), row(3, -0.1, 1.5))))
    notes = trajectory_notes(SimpleNamespace(models=(model,)))
    assert len(notes) == 2
    assert notes[0].startswith("A: negative information gain with its own codes at step 2, 4: ")
    assert "worse than from its tokens alone" in notes[0]
    assert notes[1].startswith("A: at step 3 even the teacher's codes at the committed slots do not lower")
    fine = SimpleNamespace(label="B", reveal_bits=(6.0, 5.0, 4.0), trajectory=SimpleNamespace(
        rows=(row(0, 0.0, 0.0), row(1, 0.2, 1.0))))
    assert trajectory_notes(SimpleNamespace(models=(fine,))) == []  # step 1's zero gain is not a finding


@pytest.mark.parametrize("with_twin", [True, False])
def test_information_screen_compares_with_the_embedded_twin_by_default(tmp_path, tiny_model_dir, sample_dir, with_twin):
    """Model B starts on the default's other-recipe twin when one ships (SFVR against vanilla at one click)."""
    from tests.app_fixtures import save_tiny_model
    from workbench.services.model_registry import COMPARISON_CHOICE
    from workbench.ui import AppContext, build_app

    twin = save_tiny_model(tmp_path / "sftok-vanilla", seed=7) if with_twin else None
    ctx = AppContext.create(tmp_path / "ws", model_dir=tiny_model_dir, teacher_dir=None, samples_dir=sample_dir,
                            with_jobs=False, generator_dir=None, comparison_dir=twin)
    demo = build_app(ctx)
    picker = next(c["props"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "info-b-picker")
    assert picker["value"] == (COMPARISON_CHOICE if with_twin else "")
    assert (COMPARISON_CHOICE in [value for _, value in picker["choices"]]) == with_twin


def test_two_models_are_compared_in_words_when_one_reads_revealed_codes():
    from types import SimpleNamespace

    from workbench.services.reading_notes import comparison_note, trajectory_notes

    from analysis.model_mi import LeaveOneOutMI

    def model(label, reveal, ci_low, own, teacher):
        rows = (SimpleNamespace(step=0, info_gain_bits_per_image=0.0, teacher_gain_bits_per_image=0.0,
                                block_tc_bits=0.0, block_tc_sem=0.0),
                SimpleNamespace(step=1, info_gain_bits_per_image=own, teacher_gain_bits_per_image=teacher,
                                block_tc_bits=0.1, block_tc_sem=0.02))
        zeros = np.zeros(4)
        loo = LeaveOneOutMI(positions=np.arange(4), bits=zeros, ci_low=np.array(ci_low), ci_high=zeros + 1,
                            ce_all_bits=zeros, ce_loo_bits=zeros, per_image_bits=np.zeros((2, 4)), mean_bits=0.0,
                            mean_ci=(0.0, 0.0), num_images=2, confidence=0.95)
        return SimpleNamespace(label=label, reveal_bits=reveal, loo=loo, trajectory=SimpleNamespace(rows=rows))

    sfvr = model("A: sfvr", (5.9, 5.9, 5.89), [-0.1, -0.2, 0.01, -0.3], 1.0, 1.2)
    vanilla = model("B: vanilla", (6.2, 4.8, 4.7), [0.2, 0.1, -0.1, 0.3], -3.0, 40.0)
    note = comparison_note(SimpleNamespace(models=(sfvr, vanilla)))
    assert note == ("B: vanilla against A: sfvr: B: vanilla reads revealed codes (with 90% of them revealed the rest's "
                    "cross-entropy falls by 1.50 bits/slot, against 0.01; leave-one-out interval above zero at 3 of 4 "
                    "slots, against 1). Summed over the decode, the teacher's codes at its committed slots are worth "
                    "40.0 bits/image to it and its own codes -3.0 (A: sfvr: 1.2 and 1.0): the decoder that trusts "
                    "revealed codes is the one its own wrong guesses cost more, the exposure bias that self-forcing "
                    "(SFVR) trains against.")
    assert trajectory_notes(SimpleNamespace(models=(sfvr, vanilla)))[-1] == note
    assert comparison_note(SimpleNamespace(models=(sfvr, sfvr))) is None  # neither reads: nothing to contrast
    assert comparison_note(SimpleNamespace(models=(vanilla,))) is None


def test_negative_kl_and_total_correlation_are_read_as_zero_like_negative_mi():
    """The three quantities that cannot be negative share one sentence (reading_notes.below_zero_note)."""
    from types import SimpleNamespace

    from workbench.services.reading_notes import block_tc_note, mi_notes, self_forcing_notes

    def tc_row(step, tc, sem):
        return SimpleNamespace(step=step, block_tc_bits=tc, block_tc_sem=sem)

    noisy = SimpleNamespace(label="A", trajectory=SimpleNamespace(
        rows=(tc_row(0, 0.0018, 0.0078), tc_row(1, -0.0020, 0.0022), tc_row(2, 0.0008, 0.0015))))
    assert block_tc_note(noisy) == (
        "A: the block total correlation is negative at step 2 (-0.002) bits/image. True total correlation is never "
        "below zero; a negative estimate is noise and bias of the estimator at this sample size (it compares "
        "cross-entropies of the decoder's own predictions over a few images), and every one of these lies within 2 "
        "standard errors of zero (the error bars): read it as zero.")
    far = SimpleNamespace(label="B", trajectory=SimpleNamespace(rows=(tc_row(3, -0.05, 0.01), tc_row(4, -0.01, 0.02))))
    assert "negative at step 4 (-0.050), 5 (-0.010) bits/image" in block_tc_note(far)
    assert "at step 4 it lies more than 2 standard errors below zero" in block_tc_note(far)
    assert block_tc_note(SimpleNamespace(label="C", trajectory=SimpleNamespace(rows=(tc_row(0, 0.1, 0.01),)))) is None

    def gap(*kls):
        rows = tuple(SimpleNamespace(step=i, kl_bits=k) for i, k in enumerate(kls))
        return SimpleNamespace(rows=rows, mean_kl_bits=float(np.mean(kls[1:])))

    sfvr = SimpleNamespace(label="A: sfvr", gap=gap(0.0, -0.0042, -0.0014))
    fine = SimpleNamespace(label="B: vanilla", gap=gap(0.0, 0.0135, 0.018))
    assert self_forcing_notes(SimpleNamespace(models=(sfvr, fine))) == [
        "A: sfvr: its self-forcing KL is -0.0028 bits/slot, negative at step 2 (-0.0042), 3 (-0.0014). True KL "
        "divergence is never below zero; a negative estimate is floating-point error in comparing two nearly equal "
        "predictions (each slot's KL is computed exactly from the two distributions): there is no gap: read it as zero."]

    from analysis.model_mi import LeaveOneOutMI

    bits = np.array([0.3, -0.02, -0.01, 0.1])
    loo = LeaveOneOutMI(positions=np.arange(4), bits=bits, ci_low=bits - 0.05, ci_high=bits + 0.05,
                        ce_all_bits=np.zeros(4), ce_loo_bits=np.zeros(4), per_image_bits=np.zeros((2, 4)),
                        mean_bits=0.0925, mean_ci=(0.05, 0.13), num_images=2, confidence=0.95)
    model = SimpleNamespace(label="A", loo=loo, summary=lambda: {"ci_low": 0.05, "ci_high": 0.13, "loo_mi_bits": 0.0925})
    assert mi_notes(SimpleNamespace(models=(model,)))[-1] == (
        "A: 2 slot estimates are negative. True MI is never below zero; a negative estimate is sampling noise of the "
        "estimator on this few images: read it as zero.")


def test_codebook_progress_estimates_the_whole_run_from_its_first_batch(teacher_service, monkeypatch):
    import workbench.services.analyses as analyses

    monkeypatch.setattr(analyses, "BATCH_SIZE", 4)  # 6 images: a full first batch of 4, then 2
    texts: list[str] = []
    _, report = teacher_service.codebook("default", "datasets/default/tiny", "val", 6,
                                         progress=lambda f, text: texts.append(text))
    assert report.books["tokens"].stats.num_samples == 6
    first = next(t for t in texts if t.startswith("encoding: 4 / 6 images"))
    assert "for all 6 images; about " in first and "images fit a minute" in first
    assert any(t.startswith("encoding: 6 / 6 images") for t in texts)


def test_information_progress_estimates_the_whole_measurement(teacher_service):
    texts: list[str] = []
    teacher_service.information(["default"], "datasets/default/tiny", "val", 8, 32, 2, 1.0, 0, 2,
                                progress=lambda f, text: texts.append(text))
    # 8 images x 32 slots = 256 rows, in chunks of 128 // 32 = 4 images: the first chunk prices every decoder row,
    # 264 of leave-one-out (an all-masked pass + 256) and 64 after it: 16 trajectory + 8 teacher-forced + 16 block
    # TC (2 steps, blocks capped at 2: one row each) + 24 reveal (3 fractions) (analysis.model_mi.information_rows)
    first = next(t for t in texts if "128 / 256 rows" in t)
    assert "for all 328 decoder rows; about " in first
    assert "(leave-one-out 264, the trajectory, block TC and reveal curve 64; " in first
    rows_a_minute = int(first.split("; about ")[-1].split(" decoder rows fit")[0])
    assert first.endswith(f"; {max(0, (rows_a_minute - 64 - 8) // 8)} slots at 8 images fit a minute)")
    assert any(t.endswith("256 / 256 rows") for t in texts)


def test_a_cancelled_codebook_run_stops_after_its_batch_and_frees_the_analyses(teacher_service, monkeypatch):
    import workbench.services.analyses as analyses
    from workbench.services.cancellable import AnalysisCancelled, cancellable

    import threading

    monkeypatch.setattr(analyses, "BATCH_SIZE", 2)
    failures: list[BaseException] = []
    stopped = threading.Event()

    def work(progress):
        try:
            return teacher_service.codebook("default", "datasets/default/tiny", "val", 8, progress=progress)
        except BaseException as err:
            failures.append(err)
            stopped.set()
            raise

    stream = cancellable(work)
    next(stream)  # "starting"
    stream.close()  # what the Cancel button's `cancels` does to the screen's streaming event
    assert stopped.wait(60)  # at its next progress report, after at most one batch of 2 images
    assert len(failures) == 1 and isinstance(failures[0], AnalysisCancelled)
    assert teacher_service._lock.acquire(blocking=False)  # the lock was let go on the way out
    teacher_service._lock.release()
    _, report = teacher_service.codebook("default", "datasets/default/tiny", "val", 8)  # the next run is not blocked
    assert report.books["tokens"].stats.num_samples == 8


def test_a_cancelled_codebook_map_stops_between_epochs_and_frees_the_analyses(teacher_service, tmp_path,
                                                                              monkeypatch):
    import threading

    from workbench.services.cancellable import AnalysisCancelled, cancellable

    monkeypatch.setattr(teacher_service, "umap_cache_dir", tmp_path / "umap")  # a fit, not a cached map
    key, _ = teacher_service.codebook("default", "datasets/default/tiny", "val", 4)
    epochs: list[str] = []
    failures: list[BaseException] = []
    stopped = threading.Event()

    closed = threading.Event()

    def work(progress):
        def heard(fraction: float, text: str) -> None:
            epochs.extend([text] if text.startswith("UMAP epoch") else [])
            progress(fraction, text)
            if text.startswith("UMAP epoch 3 /"):
                closed.wait(60)  # epoch 4 starts only once the screen has cancelled: the stop is deterministic
        try:
            return teacher_service.codebook_map(key, "tokens", heard)
        except BaseException as err:
            failures.append(err)
            stopped.set()
            raise

    stream = cancellable(work, "codebook map")
    for update in stream:
        if update.text.startswith("UMAP epoch 3 /"):
            break
    stream.close()  # what Cancel does: the fit stops at its next epoch
    closed.set()
    assert stopped.wait(60) and isinstance(failures[0], AnalysisCancelled)
    assert epochs[-1] == "UMAP epoch 4 / 200"  # the report after epoch 4 was where it stopped, not at 200
    assert not list((tmp_path / "umap").glob("umap-*.npy"))  # nothing half-fitted was cached
    assert teacher_service._lock.acquire(blocking=False)  # the analyses are free for the next user
    teacher_service._lock.release()
