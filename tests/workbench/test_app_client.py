"""Every event endpoint of the app, called through gradio_client against a real launched server."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

REC_OUTPUTS = ("compare", "status", "tokens", "slider", "grid", "heat", "preview", "curve", "info")


def named(result) -> dict:
    return dict(zip(REC_OUTPUTS, result))


def tokens_of(html: str) -> list[int]:
    return [int(t) for t in re.findall(r"data-token='(\d+)'", html)]


def path_of(file_data) -> str:
    return file_data["path"] if isinstance(file_data, dict) else file_data


@pytest.fixture()
def fresh(served_app) -> Client:
    """A client with its own browser session (its own UI state)."""
    return Client(served_app[1], verbose=False, download_files=False)


def test_sample_reconstruction_and_scrubbing(fresh):
    out = named(fresh.predict("chelsea", "default", 8, 1.0, 3, "confidence", api_name="/reconstruct_sample"))
    assert "**chelsea**: 451 x 300 RGB PNG, centre-cropped and resized to 64 x 64" in out["status"]
    assert out["slider"]["maximum"] == 8 and out["slider"]["value"] == 8
    assert len(tokens_of(out["tokens"])) == 64
    assert "**Step 8 / 8**" in out["info"] and "masked 82 → 0 of 256" in out["info"]
    step3 = fresh.predict(3, "confidence", api_name="/rec_step")
    assert "**Step 3 / 8**" in step3[4] and "masked 214 → 193" in step3[4]
    assert path_of(step3[0]) != path_of(out["grid"])  # the grid changed
    assert '"shapes": [{"type": "line", "x0": 3' in step3[3]["plot"]  # the curve marks step 3
    again = fresh.predict(3, "confidence", api_name="/rec_step")
    assert path_of(again[0]) == path_of(step3[0])  # same step, same picture (served from the cache)
    entropy = fresh.predict(3, "entropy", api_name="/rec_heat")
    assert path_of(entropy[1]) != path_of(step3[1]) and path_of(entropy[0]) == path_of(step3[0])
    with pytest.raises(AppError, match="greater than maximum value 8"):
        fresh.predict(9, "confidence", api_name="/rec_step")
    # more steps: the session's slider range follows the decode
    fresh.predict("chelsea", "default", 12, 1.0, 3, "confidence", api_name="/reconstruct_sample")
    assert "**Step 10 / 12**" in fresh.predict(10, "confidence", api_name="/rec_step")[4]


def test_play_streams_every_step(fresh):
    fresh.predict("coffee", "default", 4, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    job = fresh.submit("confidence", api_name="/rec_play")
    job.result(timeout=60)
    values = [o[0] for o in job.outputs()]
    assert values == [1, 2, 3, 4]


def test_export_gif(fresh, served_app):
    fresh.predict("coffee", "default", 4, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    gif = fresh.predict("confidence", api_name="/rec_export_gif")
    from PIL import Image

    local = served_app[0].exports_dir / Path(path_of(gif["value"])).name
    with Image.open(local) as im:
        assert im.format == "GIF" and im.n_frames == 4


def test_upload_settings_and_token_surgery(fresh, sample_dir):
    out = named(fresh.predict(handle_file(str(sample_dir / "astronaut.png")), "default", 6, 0.5, 1, "confidence",
                              api_name="/reconstruct_upload"))
    assert "512 x 512 RGB PNG, resized to 64 x 64" in out["status"] and out["slider"]["maximum"] == 6
    tokens = tokens_of(out["tokens"])
    new_code = (tokens[10] + 500) % 1024
    edited = named(fresh.predict(10, new_code, "default", 6, 0.5, 1, "confidence", api_name="/token_surgery"))
    assert tokens_of(edited["tokens"])[10] == new_code and "edited" in edited["tokens"]
    assert f"position 10: {tokens[10]} → {new_code}" in edited["status"]
    # settings change keeps the edit
    rerun = named(fresh.predict("default", 3, 0.5, 1, "confidence", api_name="/reconstruct"))
    assert rerun["slider"]["maximum"] == 3 and tokens_of(rerun["tokens"])[10] == new_code
    reset = named(fresh.predict("default", 3, 0.5, 1, "confidence", api_name="/reset_tokens"))
    assert tokens_of(reset["tokens"]) == tokens
    hint = fresh.predict(10, api_name="/token_neighbours")
    assert f"holds code **{tokens[10]}**" in hint and "Nearest codewords" in hint
    with pytest.raises(AppError, match="position: must be a whole number in 0..63"):
        fresh.predict(64, 1, "default", 3, 0.5, 1, "confidence", api_name="/token_surgery")
    with pytest.raises(AppError, match="code: must be a whole number in 0..1023"):
        fresh.predict(1, 5000, "default", 3, 0.5, 1, "confidence", api_name="/token_surgery")


@pytest.mark.parametrize("kind, message", [("not_image", "not an image"), ("truncated", "truncated or corrupt"),
                                           ("huge", "too large")])
def test_bad_uploads_get_readable_errors(fresh, bad_images, kind, message):
    with pytest.raises(AppError, match=message):
        fresh.predict(handle_file(str(bad_images[kind])), "default", 8, 1.0, 0, "confidence",
                      api_name="/reconstruct_upload")
    # the server is still alive and serving
    assert "**Step 8 / 8**" in named(fresh.predict("chelsea", "default", 8, 1.0, 0, "confidence",
                                                   api_name="/reconstruct_sample"))["info"]


def test_converted_uploads_are_explained(fresh, bad_images):
    for kind, words in (("cmyk", "CMYK"), ("deep16", "I;16"), ("animated", "GIF"), ("alpha", "RGBA")):
        out = named(fresh.predict(handle_file(str(bad_images[kind])), "default", 2, 1.0, 0, "confidence",
                                  api_name="/reconstruct_upload"))
        assert words in out["status"] and "⚠" in out["status"]


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
        fresh.predict(2, "confidence", api_name="/rec_step")
    refreshed = fresh.predict("default", api_name="/rec-model_refresh_models")
    assert refreshed["value"] == "default"


def test_generate(fresh):
    choices = fresh.predict(None, api_name="/gen-model_refresh_models")["choices"]
    assert [c[1] for c in choices] == ["checkpoints/generator"]
    assert fresh.predict("default", api_name="/gen-tok_refresh_models")["value"] == "default"
    image, status, slider, grid, heat, preview, curve, info = fresh.predict(
        "checkpoints/generator", "default", 5, 8, 2.0, 1.0, 0, "confidence", api_name="/generate")
    assert "class 5" in status and slider["maximum"] == 8 and "masked 20 → 0 of 64" in info
    step1 = fresh.predict(1, "confidence", api_name="/gen_step")
    assert "masked 64 → 58 of 64" in step1[4]
    assert fresh.predict(1, "entropy", api_name="/gen_heat")[1] != step1[1]
    job = fresh.submit("confidence", api_name="/gen_play")
    job.result(timeout=60)
    assert [o[0] for o in job.outputs()] == list(range(1, 9))
    assert path_of(fresh.predict("confidence", api_name="/gen_export_gif")["value"]).endswith(".gif")
    with pytest.raises(AppError, match="class: must be in 0..15"):
        fresh.predict("checkpoints/generator", "default", 99, 8, 2.0, 1.0, 0, "confidence", api_name="/generate")


def _form(dataset: str, steps: int = 3, extra: str = "") -> list:
    return ["teacher", "tiny", dataset, None, None, "", steps, 2, 2e-4, 0, True, 1.0, "first", "arccos", 0.1,
            "data.eval_batch_size=2\nema=false" + extra, "cpu"]


def test_training_job_lifecycle(fresh, served_app):
    ctx = served_app[0]
    dataset, status = fresh.predict(api_name="/train_build_dataset")
    assert "Default dataset ready" in status and dataset["value"].startswith("datasets/default/")
    with pytest.raises(AppError, match="max_steps"):
        fresh.predict("max_steps=0, -1", *_form("datasets/small"), api_name="/train_sweep")
    assert ctx.jobs.store.list_runs() == []  # nothing queued from an invalid sweep
    status, table, run, curve_runs, _, _ = fresh.predict(*_form("datasets/small", steps=40), api_name="/train_launch")
    run_id = run["value"]
    assert "Queued" in status and run_id in status and curve_runs["value"] == [run_id]
    deadline = time.time() + 120
    while time.time() < deadline and ctx.jobs.store.metric_count(run_id) == 0:
        time.sleep(1)
    assert ctx.jobs.store.metric_count(run_id) > 0, fresh.predict(run_id, api_name="/train_log")
    table, log, *_, keys, curves = fresh.predict(run_id, [run_id], None, 0.0, api_name="/train_refresh")
    assert table["data"][0][0] == run_id and table["data"][0][2] in ("running", "done")
    assert "train/loss" in [c[1] for c in keys["choices"]] and keys["value"] == ["train/loss"]
    assert '"name": "' in curves["plot"]  # the timer's refresh already draws the default metric
    plot = fresh.predict([run_id], ["train/loss"], 0.0, api_name="/train_curves")["plot"]
    assert '"uirevision": "train-curves"' in plot and '"name": "' in plot and '"y": ' in plot
    status, table = fresh.predict(run_id, api_name="/train_cancel")
    assert run_id in status
    record = ctx.jobs.wait(run_id, timeout=90)
    assert record.status in ("stopped", "done")
    if record.status == "stopped":
        status, _ = fresh.predict(run_id, api_name="/train_resume")
        assert "queued" in status
        fresh.predict(run_id, api_name="/train_cancel")  # the fixture's teardown waits for it to stop
    diff = fresh.predict(run_id, run_id, api_name="/train_diff")
    assert diff["data"] == [] or diff["data"] == [[]]
