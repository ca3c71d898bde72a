"""Injected faults: a disk that fills up while a checkpoint is written, a damaged newest checkpoint,
garbage in a run's metrics file, a flood of jobs, and eight users decoding at once."""
from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import trainers.training_state as ckpt
from core import SFTok, create_config, load_pretrained, save_pretrained
from tests.workbench.helpers.fake_runs import make_manager, write_config
from workbench.runs.records import RunStatus
from workbench.runs.store import Store


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"layer.weight": torch.randn(64, 32, generator=g), "layer.bias": torch.randn(32, generator=g)}


class DiskFull:
    """A writer that gets ``fraction`` of the bytes onto disk and then fails with ENOSPC."""

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction, self.calls = fraction, 0

    def write(self, path: str | Path, size_hint: int = 4096) -> None:
        self.calls += 1
        Path(path).write_bytes(b"\x01" * int(size_hint * self.fraction))
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("failing", ["model", "ema", "training_state", "metadata"])
def test_disk_full_mid_checkpoint_keeps_the_previous_one_usable(tmp_path, monkeypatch, failing, tally):
    run = tmp_path / "run"
    good = ckpt.save_checkpoint(run, 10, _state(1), _state(2), {"optimizer": {"step": 10}}, {"stage": "1"}, keep_last=1)
    disk = DiskFull()
    real_save_file, real_torch_save, real_write_text = ckpt.save_file, torch.save, Path.write_text

    def save_file(tensors, path, *a, **k):
        if Path(path).name.startswith(failing):
            disk.write(path)
        return real_save_file(tensors, path, *a, **k)

    def torch_save(obj, path, *a, **k):
        if failing == "training_state":
            disk.write(path)
        return real_torch_save(obj, path, *a, **k)

    def write_text(self, text, *a, **k):
        if failing == "metadata" and self.name == "metadata.json":
            disk.write(self)
        return real_write_text(self, text, *a, **k)

    monkeypatch.setattr(ckpt, "save_file", save_file)
    monkeypatch.setattr(torch, "save", torch_save)
    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save_checkpoint(run, 20, _state(3), _state(4), {"optimizer": {"step": 20}}, {"stage": "1"}, keep_last=1)
    monkeypatch.undo()
    tally.fault("checkpoint writes")
    assert disk.calls == 1
    assert ckpt.list_checkpoints(run) == [(10, good)]  # keep_last=1 pruned nothing: the new one never existed
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-10"]  # no half-written leftovers
    path, loaded, problems = ckpt.load_latest_checkpoint(run)
    assert path == good and problems == []
    assert torch.equal(loaded["model"]["layer.weight"], _state(1)["layer.weight"])
    assert torch.equal(loaded["ema"]["layer.bias"], _state(2)["layer.bias"])
    assert loaded["training"] == {"optimizer": {"step": 10}} and loaded["metadata"]["global_step"] == 10


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, tally):
    run = tmp_path / "run"
    for step in (5, 10, 15):
        ckpt.save_checkpoint(run, step, _state(step), None, {"optimizer": {"step": step}}, {}, keep_last=3)
    newest = run / "checkpoints" / "checkpoint-15" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    middle = run / "checkpoints" / "checkpoint-10" / "training_state.pt"
    middle.write_bytes(b"PK\x03\x04 not a zip any more")
    tally.fault("checkpoint damage", 2)
    path, loaded, problems = ckpt.load_latest_checkpoint(run)
    assert path.name == "checkpoint-5" and loaded["metadata"]["global_step"] == 5
    assert len(problems) == 2 and "checkpoint-15" in problems[0] and "not a valid safetensors" in problems[0]
    assert "checkpoint-10" in problems[1] and "unreadable training checkpoint" in problems[1]
    (run / "checkpoints" / "checkpoint-5" / "metadata.json").write_text('{"global_step": "five"}')
    with pytest.raises(ckpt.CheckpointError, match="no readable checkpoint.*no integer global_step"):
        ckpt.load_latest_checkpoint(run)


def test_disk_full_while_saving_a_model_keeps_the_previous_model(tmp_path, monkeypatch, tally):
    import safetensors.torch as st

    torch.manual_seed(0)
    model = SFTok(create_config("tiny")).eval()
    folder = save_pretrained(model, tmp_path / "model")
    before = (folder / "model.safetensors").read_bytes()
    disk = DiskFull(0.3)
    monkeypatch.setattr(st, "save_file", lambda tensors, path, *a, **k: disk.write(path, len(before)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(model, folder)
    monkeypatch.undo()
    tally.fault("checkpoint writes")
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert isinstance(load_pretrained(folder), SFTok)


def test_garbage_in_a_metrics_file_loses_no_good_row(tmp_path, tally):
    run_dir = tmp_path / "ws" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    good = [{"step": s, "wall": 1000.0 + s, "metrics": {"loss": 1.0 / s, "lr": 1e-4}} for s in range(1, 41)]
    garbage = ['{"step": 3, "wall"', "not json at all", '{"step": "x", "wall": 1, "metrics": {}}', "\x00\x00\x00",
               '{"step": 7, "wall": 1.0, "metrics": [1, 2]}', "[]", '{"wall": 1.0, "metrics": {"a": 1}}']
    lines = []
    for i, record in enumerate(good):
        lines.append(json.dumps(record))
        if i % 6 == 0:
            lines.append(garbage[(i // 6) % len(garbage)])
    partial = json.dumps({"step": 41, "wall": 1041.0, "metrics": {"loss": 0.5, "lr": 1e-4}})
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n" + partial[:20])  # a writer mid-line
    with Store(tmp_path / "ws") as store:
        report = store.ingest()
        assert store.metric_count("r1") == 80 and report.skipped_lines == len(good) // 6 + 1
        with open(run_dir / "metrics.jsonl", "a") as handle:  # the writer finishes its line
            handle.write(partial[20:] + "\n")
        store.ingest()
        frame = store.metrics_frame("r1")
    tally.fault("metrics lines", report.skipped_lines + 1)
    tally.rows(82, len(frame))
    assert len(frame) == 82 and not frame.duplicated(["step", "key"]).any()
    assert sorted(set(frame["step"])) == list(range(1, 42))


def test_job_flood_from_many_threads_is_queued_not_dropped(tmp_path, tally):
    config = write_config(tmp_path / "c.yaml", max_steps=6, num_keys=2, step_sleep=0.0)
    manager = make_manager(tmp_path / "ws", device_limits={"cpu": 1}, validator=lambda spec: {"max_steps": 6})
    submitted, errors = [], []

    def submit() -> None:
        try:
            submitted.append(manager.submit("1", config))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(submitted) == 12 and len({r.id for r in submitted}) == 12
    peak, deadline = 0, time.time() + 90
    while any(manager.store.get_run(r.id).status not in RunStatus.TERMINAL for r in submitted):
        assert time.time() < deadline, "flood did not drain"
        peak = max(peak, manager.running_per_device().get("cpu", 0))
        time.sleep(0.02)
    finished = [manager.store.get_run(r.id) for r in submitted]
    counts = [manager.store.metric_count(r.id) for r in submitted]
    manager.close()
    tally.input("jobs (flood)", 12)
    tally.rows(12 * 12, sum(counts))
    assert [r.status for r in finished] == [RunStatus.DONE] * 12
    assert counts == [12] * 12 and peak == 1
    spans = sorted((r.started_at, r.ended_at) for r in finished)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(11))  # one at a time, none overlapping


def test_eight_users_decoding_at_once_get_the_single_user_answer(served_app, tally):
    from gradio_client import Client

    from workbench.services.decoding import TraceCache

    ctx, url = served_app
    requests = [("chelsea", 3), ("coffee", 5), ("astronaut", 7), ("chelsea", 11),
                ("coffee", 13), ("astronaut", 17), ("black", 19), ("chelsea", 23)]

    def decode(client: Client, sample: str, seed: int) -> tuple:
        out = client.predict(sample, "default", 6, 1.0, seed, "confidence", api_name="/reconstruct_sample")
        with Image.open(out[0][1]["path"]) as im:  # the reconstruction half of the slider
            final = np.asarray(im.convert("RGB"))
        scrubber = out[3]  # every step's pictures and facts, sent with the decode
        return out[2], scrubber, out[1], final

    single = Client(url, verbose=False, download_files=False)
    expected = [decode(single, s, seed) for s, seed in requests]
    ctx.service.cache = TraceCache(64)  # forget them: the concurrent requests must compute again
    decodes_before = ctx.service.decodes
    clients = [Client(url, verbose=False, download_files=False) for _ in requests]
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def user(i: int) -> None:
        barrier.wait()
        try:
            results[i] = decode(clients[i], *requests[i])
        except BaseException as exc:  # surfaced below
            results[i] = exc

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    tally.input("concurrent users", len(requests))
    assert ctx.service.decodes - decodes_before == len(requests)  # each one really decoded
    for i, (got, want) in enumerate(zip(results, expected)):
        assert not isinstance(got, BaseException), got
        assert got[0] == want[0], f"user {i}: token ids differ"
        assert got[1] == want[1] and got[2] == want[2], f"user {i}: step info differs"
        assert np.array_equal(got[3], want[3]), f"user {i}: reconstruction differs"
    assert len({r[0] for r in results}) == 4  # token ids depend on the picture only ...
    assert len({(r[0], r[3].tobytes()) for r in results}) == 8  # ... the decode on the seed: 8 answers, none crossed
