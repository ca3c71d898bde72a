"""Every event endpoint of the app, called through gradio_client against a real launched server."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.app_fixtures import REC_OUTPUTS, named


def tokens_of(html: str) -> list[int]:
    return [int(t) for t in re.findall(r"data-token='(\d+)'", html)]


def frames_of(scrubber_html: str) -> dict:
    """The per-step frames the scrubber carries to the browser (``data-frames``)."""
    import html
    import json

    return json.loads(html.unescape(re.search(r'data-frames="([^"]*)"', scrubber_html).group(1)))


def path_of(file_data) -> str:
    return file_data["path"] if isinstance(file_data, dict) else file_data


@pytest.fixture()
def fresh(served_app) -> Client:
    """A client with its own browser session (its own UI state)."""
    return Client(served_app[1], verbose=False, download_files=False)


def test_sample_reconstruction_and_scrubbing(fresh):
    out = named(fresh.predict("chelsea", "default", 8, 1.0, 3, "confidence", api_name="/reconstruct_sample"))
    assert "**chelsea**: 451 x 300 RGB PNG, centre-cropped and resized to 64 x 64" in out["status"]
    assert len(tokens_of(out["tokens"])) == 64
    frames = frames_of(out["scrubber"])  # every step travels once; the browser switches between them
    assert frames["steps"] == 8 and len(frames["grid"]) == len(frames["preview"]) == 8
    assert set(frames["heat"]) == {"confidence", "entropy"} and all(len(v) == 8 for v in frames["heat"].values())
    assert "<b>Step 8 / 8</b>" in frames["info"][7] and "masked 82 → 0 of 256" in frames["info"][7]
    assert "masked 214 → 193" in frames["info"][2] and frames["grid"][2] != frames["grid"][7]
    assert frames["info"][7].count("mean confidence") == 1
    assert "<b>Step 8 / 8</b>" in out["scrubber"]  # the last step is what shows first
    assert '"title": {"text": "Per-step metrics"' in out["curve"]["plot"]
    # the PSNR comes with the image's own mean colour and 4x4 thumbnail for scale, said in words
    assert "For scale, this image rebuilt without a model from its mean colour " in out["note"]
    assert "a 4x4 thumbnail" in out["note"]
    # more steps: the frames follow the decode
    more = named(fresh.predict("chelsea", "default", 12, 1.0, 3, "confidence", api_name="/reconstruct_sample"))
    assert frames_of(more["scrubber"])["steps"] == 12


def test_export_gif(fresh, served_app):
    fresh.predict("coffee", "default", 4, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    gif = fresh.predict("confidence", api_name="/rec_export_gif")
    from PIL import Image

    local = served_app[0].exports_dir / Path(path_of(gif["value"])).name
    with Image.open(local) as im:
        assert im.format == "GIF" and im.n_frames == 4
    again = named(fresh.predict("coffee", "default", 3, 1.0, 0, "confidence", api_name="/reconstruct_sample"))
    assert again["gif"]["visible"] is False  # a new decode hides the GIF of the old one


def test_upload_settings_and_token_surgery(fresh, sample_dir):
    out = named(fresh.predict(handle_file(str(sample_dir / "astronaut.png")), "default", 6, 0.5, 1, "confidence",
                              api_name="/reconstruct_upload"))
    assert "512 x 512 RGB PNG, resized to 64 x 64" in out["status"] and frames_of(out["scrubber"])["steps"] == 6
    tokens = tokens_of(out["tokens"])
    new_code = (tokens[10] + 500) % 1024
    edited = named(fresh.predict(10, new_code, "default", 6, 0.5, 1, "confidence", api_name="/token_surgery"))
    assert tokens_of(edited["tokens"])[10] == new_code and "edited" in edited["tokens"]
    assert f"position 10: {tokens[10]} → {new_code}" in edited["status"]
    # settings change keeps the edit
    rerun = named(fresh.predict("default", 3, 0.5, 1, "confidence", api_name="/reconstruct"))
    assert frames_of(rerun["scrubber"])["steps"] == 3 and tokens_of(rerun["tokens"])[10] == new_code
    reset = named(fresh.predict("default", 3, 0.5, 1, "confidence", api_name="/reset_tokens"))
    assert tokens_of(reset["tokens"]) == tokens
    hint = fresh.predict(10, api_name="/token_neighbours")
    assert f"holds code **{tokens[10]}**" in hint and "Nearest codewords" in hint
    with pytest.raises(AppError, match="position: must be a whole number in 0..63"):
        fresh.predict(64, 1, "default", 3, 0.5, 1, "confidence", api_name="/token_surgery")
    with pytest.raises(AppError, match="code: must be a whole number in 0..1023"):
        fresh.predict(1, 5000, "default", 3, 0.5, 1, "confidence", api_name="/token_surgery")
    for position in (2.5, -1):  # neither rounded nor answered with a framework message
        with pytest.raises(AppError, match="position: must be a whole number in 0..63"):
            fresh.predict(position, 1, "default", 3, 0.5, 1, "confidence", api_name="/token_surgery")
    assert "whole number in 0..63" in fresh.predict(2.5, api_name="/token_neighbours")


def image_of(file_data) -> np.ndarray:
    """An image output (served from this process's own server) as a uint8 array."""
    from PIL import Image

    with Image.open(path_of(file_data)) as im:
        return np.asarray(im.convert("RGB"))


def test_token_surgery_says_how_much_the_image_changed(fresh):
    """The status gives PSNR and max |delta| (0..255) of the edited decode against the unedited one."""
    base = named(fresh.predict("coffee", "default", 4, 0.0, 0, "confidence", api_name="/reconstruct_sample"))
    tokens = tokens_of(base["tokens"])
    edited = named(fresh.predict(5, (tokens[5] + 1) % 1024, "default", 4, 0.0, 0, "confidence",
                                 api_name="/token_surgery"))
    before, after = image_of(base["compare"][1]), image_of(edited["compare"][1])
    factor = before.shape[0] // 64  # shown upscaled by whole pixels: read one pixel per model pixel
    before, after = before[::factor, ::factor].astype(float), after[::factor, ::factor].astype(float)
    assert before.shape == (64, 64, 3)
    mse = ((after - before) ** 2).mean()
    assert mse > 0  # this edit changes the tiny model's picture
    changed = int((after != before).any(axis=-1).sum())
    assert (f"Against the unedited decode (same settings): PSNR {10 * np.log10(255 ** 2 / mse):.2f} dB, "
            f"max |Δ| {int(np.abs(after - before).max())} of 255, {changed} of 4096 pixels changed.") in edited["status"]
    assert "unedited decode" not in base["status"]  # nothing was edited there


def test_a_new_source_empties_the_other_picker(fresh, sample_dir):
    """An upload empties the sample picker and a sample empties the upload box: neither names a stale picture."""
    picked = fresh.predict("chelsea", "default", 2, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    assert len(picked) == len(REC_OUTPUTS) + 1 and picked[-1] is None  # the upload box
    uploaded = fresh.predict(handle_file(str(sample_dir / "astronaut.png")), "default", 2, 1.0, 0, "confidence",
                             api_name="/reconstruct_upload")
    assert "**astronaut.png**" in named(uploaded)["status"] and uploaded[-1] is None  # the sample picker


@pytest.mark.parametrize("kind, message", [("not_image", "not an image"), ("truncated", "truncated or corrupt"),
                                           ("huge", "too large")])
def test_bad_uploads_get_readable_errors(fresh, bad_images, kind, message):
    with pytest.raises(AppError, match=message):
        fresh.predict(handle_file(str(bad_images[kind])), "default", 8, 1.0, 0, "confidence",
                      api_name="/reconstruct_upload")
    # the server is still alive and serving
    assert "<b>Step 8 / 8</b>" in named(fresh.predict("chelsea", "default", 8, 1.0, 0, "confidence",
                                                      api_name="/reconstruct_sample"))["scrubber"]


def test_converted_uploads_are_explained(fresh, bad_images):
    for kind, words in (("cmyk", "CMYK"), ("deep16", "I;16"), ("animated", "GIF"), ("alpha", "RGBA")):
        out = named(fresh.predict(handle_file(str(bad_images[kind])), "default", 2, 1.0, 0, "confidence",
                                  api_name="/reconstruct_upload"))
        assert words in out["status"] and "⚠" in out["status"]


def test_reset_and_surgery_follow_the_model_dropdown(fresh, served_app, tiny_model_dir):
    """After switching models, Reset and surgery decode with the model the dropdown shows."""
    import shutil

    ws = served_app[0].workspace.root
    if not (ws / "checkpoints" / "tok2").exists():
        shutil.copytree(tiny_model_dir, ws / "checkpoints" / "tok2")
    first = named(fresh.predict("coffee", "default", 2, 1.0, 0, "confidence", api_name="/reconstruct_sample"))
    reset = named(fresh.predict("checkpoints/tok2", 2, 1.0, 0, "confidence", api_name="/reset_tokens"))
    assert "coffee" in reset["status"] and tokens_of(reset["tokens"]) == tokens_of(first["tokens"])
    edited = named(fresh.predict(3, 7, "checkpoints/tok2", 2, 1.0, 0, "confidence", api_name="/token_surgery"))
    assert tokens_of(edited["tokens"])[3] == 7


def test_bad_settings_and_models(fresh):
    with pytest.raises(AppError, match="no image yet"):
        fresh.predict("default", 8, 1.0, 0, "confidence", api_name="/reconstruct")
    with pytest.raises(AppError, match="outside the workspace"):
        fresh.predict("chelsea", "../../etc", 8, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    with pytest.raises(AppError, match="HF_HUB_OFFLINE"):
        fresh.predict("chelsea", "someone/model", 8, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    with pytest.raises(AppError, match="not in the list of choices"):
        fresh.predict("nope", "default", 8, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    with pytest.raises(AppError, match="no longer cached"):
        fresh.predict("confidence", api_name="/rec_export_gif")
    refreshed = fresh.predict("default", api_name="/rec-model_refresh_models")
    assert refreshed["value"] == "default"


def test_generate(fresh):
    choices = fresh.predict(None, api_name="/gen-model_refresh_models")["choices"]
    assert [c[1] for c in choices] == ["checkpoints/generator"]
    assert fresh.predict("default", api_name="/gen-tok_refresh_models")["value"] == "default"
    image, status, scrubber, curve, note, gif = fresh.predict(
        "checkpoints/generator", "default", 5, 8, 2.0, 1.0, 0, "confidence", api_name="/generate")
    frames = frames_of(scrubber)
    assert "class 5" in status and frames["steps"] == 8 and "masked 20 → 0 of 64" in frames["info"][7]
    assert "masked 64 → 58 of 64" in frames["info"][0] and frames["heat"]["entropy"][0] != frames["heat"]["confidence"][0]
    assert frames["info"][0].count("mean confidence") == 1  # the generator's metric, not printed twice
    assert path_of(fresh.predict("confidence", api_name="/gen_export_gif")["value"]).endswith(".gif")
    with pytest.raises(AppError, match="class: must be in 0..15"):
        fresh.predict("checkpoints/generator", "default", 99, 8, 2.0, 1.0, 0, "confidence", api_name="/generate")


def _form(dataset: str, steps: int = 3, extra: str = "") -> list:
    return ["teacher", "tiny", dataset, None, None, "", steps, 2, 2e-4, 0, True, 1.0, "first", "arccos", 0.1,
            "data.eval_batch_size=2\nema=false" + extra, "cpu"]


def _refresh(fresh, run_id, curve_runs, watch_runs=None) -> dict:
    names = ("status", "table", "log", "curve_runs", "run", "diff_a", "diff_b", "sweep", "samples", "sample_step",
             "keys", "eval_keys", "curves",
             "eval_curves")
    return dict(zip(names, fresh.predict(run_id, curve_runs, None, None, 0.0, None, None, None,
                                         api_name="/train_refresh")))


def test_training_job_lifecycle(fresh, served_app):
    ctx = served_app[0]
    dataset, status = fresh.predict(api_name="/train_build_dataset")
    assert "Default dataset ready" in status and dataset["value"].startswith("datasets/default/")
    status, table = fresh.predict("max_steps=0, -1", *_form("datasets/small"), api_name="/train_sweep")
    assert "validating" in status and "validating…" in [row[2] for row in table["data"]]  # acknowledged at once
    deadline = time.time() + 120
    while time.time() < deadline and "invalid configuration" not in _refresh(fresh, None, [])["status"]:
        time.sleep(1)
    refreshed = _refresh(fresh, None, [])
    assert "max_steps" in refreshed["status"] and "invalid (see status)" in str(refreshed["table"]["data"])
    assert ctx.jobs.store.list_runs() == []  # nothing queued from an invalid sweep
    status, _ = fresh.predict(*_form("datasets/small", steps=40), api_name="/train_launch")
    assert "validating" in status
    deadline = time.time() + 120
    while time.time() < deadline and not ctx.jobs.store.list_runs():
        time.sleep(0.5)
    run_id = ctx.jobs.store.list_runs()[0].id
    deadline = time.time() + 120
    while time.time() < deadline and ctx.jobs.store.metric_count(run_id) == 0:
        time.sleep(1)
    assert ctx.jobs.store.metric_count(run_id) > 0
    picked = _refresh(fresh, None, [])  # the refresh puts the new run into this session's pickers
    assert picked["run"]["value"] == run_id and picked["curve_runs"]["value"] == [run_id], picked
    out = _refresh(fresh, run_id, [run_id])
    row = next(r for r in out["table"]["data"] if r[0] == run_id)
    assert row[2] in ("running", "done")
    assert "train/loss" in [c[1] for c in out["keys"]["choices"]] and out["keys"]["value"] == ["train/loss"]
    assert '"name": "' in out["curves"]["plot"]  # the timer's refresh already draws the default metric
    assert re.search(r"^step \d+: loss ", out["log"], re.M)  # the live log: one line per logged step
    plot = fresh.predict([run_id], ["train/loss"], 0.0, api_name="/train_curves")["plot"]
    assert '"uirevision": "train-curves"' in plot and '"name": "' in plot and '"y": ' in plot
    status, table = fresh.predict(run_id, api_name="/train_cancel")
    assert run_id in status or "Cancel sent" in status
    record = ctx.jobs.wait(run_id, timeout=90)
    assert record.status in ("stopped", "done")
    final = _refresh(fresh, run_id, [run_id])
    assert record.status in final["status"]  # the status line follows the run
    lines = final["log"].splitlines()
    ends = [i for i, line in enumerate(lines) if line.startswith(("done: step", "signal "))]
    assert ends and ends[0] > max(i for i, line in enumerate(lines) if line.startswith("step "))  # in time order
    if record.status == "stopped":
        status, _ = fresh.predict(run_id, api_name="/train_resume")
        assert "Resumed" in status
        fresh.predict(run_id, api_name="/train_cancel")  # the fixture's teardown waits for it to stop
    diff = fresh.predict(run_id, run_id, api_name="/train_diff")
    assert diff["data"] == [] or diff["data"] == [[]]


def test_a_failed_generate_clears_the_stale_result(tmp_path, tiny_model_dir, sample_dir):
    """Generate with a class the generator does not have: the status line says why, and the previous picture and
    steps are cleared (the browser runs the failure handler the app registers; here it is called as the browser
    would, after the request failed)."""
    import gradio as gr

    from workbench.services.model_registry import DEFAULT_GENERATOR_DIR
    from workbench.ui import AppContext, build_app
    from workbench.ui.components.step_scrubber import ScrubberState

    ctx = AppContext.create(tmp_path / "ws", model_dir=tiny_model_dir, teacher_dir=None, samples_dir=sample_dir,
                            with_jobs=False, generator_dir=DEFAULT_GENERATOR_DIR)
    demo = build_app(ctx)
    (generate_id, generate), = [(i, f) for i, f in demo.fns.items() if f.api_name == "generate"]
    classes = len(ctx.registry.class_names("default"))
    with pytest.raises(gr.Error, match=f"class: must be one of the {classes} named classes, 0..{classes - 1}, got 999"):
        list(generate.fn("default", "default", 999, 8, 2.0, 1.0, 0, "confidence"))  # a streaming callback
    (on_failure,) = [f for f in demo.fns.values()
                     if f.get_config()["trigger_after"] == generate_id and f.get_config()["trigger_only_on_failure"]]
    shown = {o.elem_id: v for o, v in zip(on_failure.outputs, on_failure.fn())}
    assert "Cannot do that" in shown["gen-status"] and "got 999" in shown["gen-status"]
    assert shown["gen-image"] is None and shown["gen-curve"] is None and shown["gen-curve-note"] == ""
    assert "Generate a sample to see its steps." in shown["gen-scrubber"]
    assert shown[None] == ScrubberState()  # the scrubber's state (no element id) forgets the old decode
