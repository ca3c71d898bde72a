"""``python -m analysis``: each subcommand end to end on a saved tiny model, a real image folder and shards."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

import analysis.umap_embedding as umap_embedding
from analysis.cli import main
from analysis.data import iter_image_batches
from core import save_pretrained

from .conftest import photo_crops

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model, tiny_teacher) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis-cli")
    save_pretrained(tiny_model, root / "model")
    save_pretrained(tiny_teacher, root / "teacher")
    folder = root / "images"
    folder.mkdir()
    crops = photo_crops(5, size=80, seed=1)  # larger than 64: exercises resize + centre crop
    for i, crop in enumerate(crops[:4]):
        Image.fromarray(crop).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    with wds.TarWriter(str(root / "shard-000000.tar")) as writer:
        for i, crop in enumerate(crops):
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, format="PNG")
            writer.write({"__key__": f"{i:08d}", "png": buf.getvalue(), "cls": b"0"})
    return {"root": root, "model": root / "model", "teacher": root / "teacher", "images": folder,
            "shards": root / "shard-{000000..000000}.tar"}


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_image_sources_folder_and_shards(workspace) -> None:
    folder = list(iter_image_batches(workspace["images"], 64, batch_size=3))
    assert [b.keys for b in folder] == [("img0.png", "img1.png", "img2.png"), ("img3.png",)]
    assert folder[0].images.shape == (3, 3, 64, 64)
    assert 0.0 <= float(folder[0].images.min()) and float(folder[0].images.max()) <= 1.0
    shards = list(iter_image_batches(str(workspace["shards"]), 64, batch_size=4, limit=5))
    assert [len(b.keys) for b in shards] == [4, 1]
    assert shards[0].keys[1] == "shard-000000.tar/00000001"
    # Same pixels through both routes (PNG is lossless).
    torch.testing.assert_close(shards[0].images[:3], folder[0].images)
    with pytest.raises(FileNotFoundError, match="no files match"):
        list(iter_image_batches(str(workspace["root"] / "missing-*.tar"), 64))


def test_steps_without_weights_reports_and_still_writes_pixel_metrics(workspace, empty_torch_home, tmp_path,
                                                                      capsys) -> None:
    out = tmp_path / "steps"
    code = main(["steps", "--model", str(workspace["model"]), "--data", str(workspace["images"]), "--num-images", "4",
                 "--batch-size", "2", "--steps", "2", "--sweep", "1,2", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert "lpips skipped" in captured.err and "alexnet-owt-7be5be79.pth" in captured.err
    assert str(empty_torch_home) in captured.err
    assert "rfid skipped" in captured.err and "weights-inception-2015-12-05-6726825d.pth" in captured.err
    assert "Traceback" not in captured.err
    result = json.loads((out / "steps.json").read_text())
    assert [r["step"] for r in result["per_step"]] == [0, 1]
    assert [r["num_steps"] for r in result["sweep"]] == [1, 2]
    assert all(r["num_images"] == 4 and 0 < r["psnr"] < 100 and r["lpips"] is None for r in result["per_step"])
    assert set(result["skipped"]) == {"lpips", "rfid"}
    rows = read_csv(out / "steps_sweep.csv")
    assert float(rows[0]["psnr"]) == pytest.approx(result["sweep"][0]["psnr"])
    html = (out / "steps_report.html").read_text()
    assert "plotly" in html.lower() and "Step-count sweep" in html
    assert "step 2/2" in captured.out


def test_steps_with_a_teacher_adds_the_teacher_context_table(workspace, tmp_path, capsys) -> None:
    out = tmp_path / "steps-teacher"
    code = main(["steps", "--model", str(workspace["model"]), "--teacher", str(workspace["teacher"]), "--data",
                 str(workspace["images"]), "--num-images", "4", "--batch-size", "2", "--steps", "3", "--sweep", "1",
                 "--out", str(out), "--no-progress", "--no-lpips", "--no-fid"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads((out / "steps.json").read_text())
    forced, own = result["teacher_context"], result["per_step"]
    assert [r["step"] for r in forced] == [0, 1, 2] and all(r["num_images"] == 4 for r in forced)
    assert forced[0]["psnr"] == pytest.approx(own[0]["psnr"], abs=1e-6)  # step 1: nothing committed yet
    assert len(result["committed_accuracy"]) == 3 and all(0.0 <= a <= 1.0 for a in result["committed_accuracy"])
    rows = read_csv(out / "steps_teacher_context.csv")
    assert [float(r["psnr"]) for r in rows] == pytest.approx([r["psnr"] for r in forced])
    assert "teacher's codes at the committed slots" in captured.out
    assert "teacher's codes committed" in (out / "steps_report.html").read_text()


def test_codebook_usage_for_model_and_teacher(workspace, tmp_path, capsys) -> None:
    out = tmp_path / "codebook"
    code = main(["codebook", "--model", str(workspace["model"]), "--teacher", str(workspace["teacher"]), "--data",
                 str(workspace["images"]), "--batch-size", "2", "--reservoir", "4", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "codebook.json").read_text())
    assert summary["num_samples"] == 4 and summary["num_tokens"] == 4 * 64 and summary["codebook_size"] == 1024
    counts = read_csv(out / "codebook_counts.csv")
    assert len(counts) == 1024 and sum(int(r["count"]) for r in counts) == 256
    assert summary["used_codes"] == sum(int(r["count"]) > 0 for r in counts)
    assert len(read_csv(out / "codebook_positions.csv")) == 64
    examples = json.loads((out / "codebook_examples.json").read_text())
    refs = [ref for code_refs in examples.values() for ref in code_refs]
    assert {key for key, _ in refs} <= {f"img{i}.png" for i in range(4)}
    assert all(0 <= pos < 64 for _, pos in refs)
    teacher = json.loads((out / "teacher_codebook.json").read_text())
    assert teacher["num_tokens"] == 4 * 256 and teacher["codebook_size"] == 256
    assert "Teacher codebook" in (out / "codebook_report.html").read_text()


def test_umap_coloured_by_usage_file(workspace, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(umap_embedding, "_fit", lambda v, *a: np.stack([v[:, 0], v[:, 1]], 1).astype(np.float32))
    usage = tmp_path / "counts.csv"
    usage.write_text("code,count\n3,7\n5,1\n")
    out = tmp_path / "umap"
    args = ["umap", "--model", str(workspace["model"]), "--usage", str(usage), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out)]
    assert main(args) == 0
    rows = read_csv(out / "umap_sftok.csv")
    assert len(rows) == 1024 and rows[3]["count"] == "7" and rows[4]["count"] == "0"
    assert json.loads((out / "umap.json").read_text())[0]["from_cache"] is False
    assert main(args) == 0
    assert json.loads((out / "umap.json").read_text())[0]["from_cache"] is True
    capsys.readouterr()
    usage.write_text("code,count\n5000,1\n")
    assert main(args) == 2
    assert "outside the codebook" in capsys.readouterr().err
    # Counts from images instead of a file, and the teacher's codebook alongside.
    out2 = tmp_path / "umap2"
    assert main(["umap", "--model", str(workspace["model"]), "--teacher", str(workspace["teacher"]), "--data",
                 str(workspace["images"]), "--cache-dir", str(tmp_path / "cache"), "--out", str(out2),
                 "--no-progress"]) == 0
    assert sum(int(r["count"]) for r in read_csv(out2 / "umap_sftok.csv")) == 4 * 64
    teacher_rows = read_csv(out2 / "umap_teacher.csv")
    assert len(teacher_rows) == 256 and sum(int(r["count"]) for r in teacher_rows) == 4 * 256


def test_mi_end_to_end_with_comparison(workspace, tmp_path, capsys) -> None:
    out = tmp_path / "mi"
    code = main(["mi", "--model", str(workspace["model"]), "--teacher", str(workspace["teacher"]), "--compare",
                 str(workspace["model"]), "--data", str(workspace["shards"]), "--num-images", "3", "--positions", "4",
                 "--bootstrap", "50", "--steps", "2", "--max-block-slots", "3", "--shuffles", "2", "--token-images", "5",
                 "--batch-size", "2", "--out", str(out),
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    loo = read_csv(out / "mi_loo.csv")
    assert len(loo) == 4 and all(np.isfinite(float(r["bits"])) for r in loo)
    traj = read_csv(out / "mi_trajectory.csv")
    assert [int(r["step"]) for r in traj] == [0, 1]
    gaps = read_csv(out / "mi_self_forcing.csv")
    assert len(gaps) == 4  # two checkpoints x two steps
    # The same checkpoint compared with itself gives the same gap.
    assert gaps[1]["kl_bits"] == gaps[3]["kl_bits"]
    summary = json.loads((out / "mi.json").read_text())
    assert summary["target_source"] == "teacher" and summary["num_images"] == 3
    assert np.asarray(summary["latent_pairwise_bits"]).shape == (64, 64)
    assert summary["tokens"]["token_images"] == 5 and summary["tokens"]["proxy_grid_images"] == 5
    assert "LOO MI" in captured.out


def test_codebook_and_umap_take_any_tokenizer(workspace, tmp_path, monkeypatch, capsys) -> None:
    """A TiTok folder and the teacher itself: counts of their own ids; the teacher's codes beside the TiTok's."""
    from core.tokenizer import load_tokenizer
    from analysis.data import iter_image_batches
    from tests.app_fixtures import save_tiny_titok

    titok = save_tiny_titok(tmp_path / "titok")
    out = tmp_path / "titok-codebook"
    assert main(["codebook", "--model", str(titok), "--teacher", str(workspace["teacher"]), "--data",
                 str(workspace["images"]), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "codebook.json").read_text())
    assert summary["num_tokens"] == 4 * 32 and summary["codebook_size"] == 4096
    tok = load_tokenizer(titok)
    images = next(iter(iter_image_batches([str(workspace["images"])], 64, 8))).images
    direct = np.bincount(tok.encode_each(images).flatten().numpy(), minlength=4096)
    assert [int(r["count"]) for r in read_csv(out / "codebook_counts.csv")] == direct.tolist()
    assert json.loads((out / "teacher_codebook.json").read_text())["num_tokens"] == 4 * 256
    assert "titok codebook (32 latent tokens)" in (out / "codebook_report.html").read_text()
    out = tmp_path / "teacher-codebook"
    assert main(["codebook", "--model", str(workspace["teacher"]), "--teacher", str(workspace["teacher"]), "--data",
                 str(workspace["images"]), "--out", str(out), "--no-progress", "--image-size", "64"]) == 0
    assert json.loads((out / "codebook.json").read_text())["num_tokens"] == 4 * 256
    assert not (out / "teacher_codebook.json").exists()  # the teacher is the tokenizer: no second book
    monkeypatch.setattr(umap_embedding, "_fit", lambda v, *a: np.stack([v[:, 0], v[:, 1]], 1).astype(np.float32))
    out = tmp_path / "titok-umap"
    assert main(["umap", "--model", str(titok), "--teacher", str(workspace["teacher"]), "--data",
                 str(workspace["images"]), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    assert sum(int(r["count"]) for r in read_csv(out / "umap_titok.csv")) == 4 * 32
    assert len(read_csv(out / "umap_teacher.csv")) == 256


def test_cli_errors_are_one_line_messages(workspace, tmp_path, capsys) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text('{"model_type": "generator"}')
    assert main(["codebook", "--model", str(tmp_path / "junk"), "--data", str(workspace["images"]),
                 "--out", str(tmp_path)]) == 2
    assert "--model: " in capsys.readouterr().err
    assert main(["codebook", "--model", str(workspace["model"]), "--data", str(tmp_path / "nope*.tar"),
                 "--out", str(tmp_path)]) == 2
    assert "no files match" in capsys.readouterr().err
    assert main(["mi", "--model", str(workspace["model"]), "--compare", str(workspace["model"]), "--data",
                 str(workspace["images"]), "--out", str(tmp_path)]) == 2
    assert "--compare: needs --teacher" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point(workspace, tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "analysis", "codebook", "--model", str(workspace["model"]), "--data",
                           str(workspace["images"]), "--reservoir", "0", "--out", str(tmp_path), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "utilisation" in proc.stdout and (tmp_path / "codebook_report.html").is_file()
