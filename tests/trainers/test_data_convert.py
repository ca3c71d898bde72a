"""Image folder -> shards -> loader round trip, refusal to overwrite, unreadable files reported."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers.data import convert_folder, make_eval_loader
from trainers.data.convert import main
from trainers.data.shards import read_shard

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path: Path, kit) -> dict:
    """Class folders 'zebra' and 'ant' (ids 1 and 0 by sorted name) with PNG, JPEG, BMP and broken files."""
    src = tmp_path / "src"
    images = {}
    for name, seed, fmt, cls in [("ant/a.png", 0, "PNG", "ant"), ("ant/deep/b.jpg", 1, "JPEG", "ant"),
                                 ("zebra/c.bmp", 2, "BMP", "zebra"), ("zebra/d.png", 3, "PNG", "zebra")]:
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = kit.image(40, 30, seed)
        path.write_bytes(kit.encode(image, fmt))
        images[name] = (image, cls)
    (src / "zebra" / "broken.png").write_text("not an image at all")
    (src / "ant" / "notes.txt").write_text("ignored: no image suffix")
    (src / "stray.png").write_bytes(kit.encode(kit.image(8, 8, 5)))
    return {"src": src, "out": tmp_path / "out", "images": images}


def test_round_trip_keeps_pixels_and_labels(folder) -> None:
    report = convert_folder(folder["src"], folder["out"], prefix="train", max_per_shard=3, progress=False)
    assert report.samples == 4 and report.class_names == ["ant", "zebra"] and report.ignored == 1
    assert [Path(p).name for p in report.shards] == ["train-000000.tar", "train-000001.tar"]
    assert sorted(name for name, _ in report.skipped) == ["stray.png", "zebra/broken.png"]
    assert json.loads((folder["out"] / "labels.json").read_text()) == {"ant": 0, "zebra": 1}

    raw = [s for shard in report.shards for s in read_shard(str(shard))]
    assert [s["__key__"] for s in raw] == ["00000000", "00000001", "00000002", "00000003"]
    assert [sorted(k for k in s if not k.startswith("__")) for s in raw] == [
        ["cls", "png"], ["cls", "jpg"], ["cls", "png"], ["cls", "png"]]  # BMP re-encoded as PNG
    # Sorted paths: ant/a.png, ant/deep/b.jpg, zebra/c.bmp, zebra/d.png; PNG/JPEG stored byte for byte.
    assert raw[0]["png"] == (folder["src"] / "ant/a.png").read_bytes()
    assert raw[1]["jpg"] == (folder["src"] / "ant/deep/b.jpg").read_bytes()

    batches = list(make_eval_loader([str(p) for p in report.shards], 30, batch_size=8))
    assert len(batches) == 1 and batches[0]["class_id"].tolist() == [0, 0, 1, 1]
    # 40x30 images at image_size 30: no resize, a centre crop of columns 5..34. Lossless ones match exactly.
    for index, name in [(0, "ant/a.png"), (2, "zebra/c.bmp"), (3, "zebra/d.png")]:
        expected = np.array(folder["images"][name][0])[:, 5:35].transpose(2, 0, 1) / 255
        assert np.allclose(batches[0]["image"][index].numpy(), expected, atol=1e-6), name


def test_refuses_to_overwrite_and_cli_reports(folder, capsys) -> None:
    convert_folder(folder["src"], folder["out"], progress=False)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        convert_folder(folder["src"], folder["out"], progress=False)
    assert main([str(folder["src"]), str(folder["out"])]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    # Another prefix in the same folder is fine (same classes, same labels.json).
    assert main([str(folder["src"]), str(folder["out"]), "--prefix", "val", "--image-size", "20"]) == 0
    out = capsys.readouterr().out
    assert "wrote 4 samples in 1 shards" in out
    assert "skipped 2 unreadable files:" in out and "zebra/broken.png" in out and "stray.png" in out
    shrunk = list(read_shard(str(folder["out"] / "val-000000.tar")))
    sizes = [Image.open(io.BytesIO(s.get("png", s.get("jpg")))).size for s in shrunk]
    assert sizes == [(26, 20)] * 4  # 40x30 -> shorter side 20, longer int(40 * 20 / 30) as torchvision rounds


def test_flat_folder_is_one_class_via_module_cli(tmp_path: Path, kit) -> None:
    src = tmp_path / "flowers"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.png").write_bytes(kit.encode(kit.image(16, 16, i)))
    result = subprocess.run([sys.executable, "-m", "trainers.data.convert", str(src), str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 samples in 1 shards" in result.stdout
    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == {"flowers": 0}
    labels = [s["cls"] for s in read_shard(str(tmp_path / "out" / "train-000000.tar"))]
    assert labels == [b"0", b"0", b"0"]
