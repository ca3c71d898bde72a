"""``python -m analysis eval`` on a ReVQ release folder as a user keeps it: ``ckpt.pth``, its YAML,
``preprocessor.pth`` and the DC-AE in ``dc_ae/`` (a tiny diffusers AutoencoderDC in its file format). One step
only, so the asked-for multi-step counts are skipped with a note; the pixel metrics are those of the tokenizer's
own reconstructions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.cli import main
from analysis.data import iter_image_batches
from analysis.image_metrics import psnr
from core.tokenizer import load_tokenizer
from tests.core.test_revq import TINY, build, save_tiny_dcae, write_release

from .conftest import photo_crops
from .random_inception import random_inception  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval-revq")
    folder = write_release(root / "revq", build(TINY, 0))
    save_tiny_dcae(folder / "dc_ae", seed=2)
    images = root / "images"
    images.mkdir()
    for i, crop in enumerate(photo_crops(3, size=128, seed=5)):
        Image.fromarray(crop).save(images / f"crop{i}.png")
    return {"model": folder, "data": images, "root": root}


def test_a_revq_release_folder_is_evaluated_in_one_step(release, random_inception) -> None:  # noqa: F811
    out = release["root"] / "out"
    assert main(["eval", "--model", str(release["model"]), "--data", str(release["data"]), "--steps", "1,8",
                 "--temperatures", "0", "--batch-size", "2", "--inception-weights", str(random_inception),
                 "--no-lpips", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "results.json").read_text())
    (record,) = result["records"]
    assert (record["family"], record["steps"], record["temperature"], record["num_images"]) == ("revq", 1, None, 3)
    assert result["notes"] == [f"{release['model']}: revq decodes in at most 1 step(s); skipped steps [8]"]
    assert record["image_size"] == 256 and np.isfinite(record["rfid"]) and record["rfid"] > 0

    tok = load_tokenizer(release["model"])
    ids, own = [], []
    for batch in iter_image_batches(str(release["data"]), 256, 3):
        codes = tok.encode(batch.images)
        ids.append(codes)
        own.append(psnr(tok.decode(codes), batch.images))
    assert record["psnr"] == pytest.approx(float(torch.cat(own).mean()), abs=1e-4)
    # usage counts position-codes: each of the 256 positions has its own 64-code book
    ids = torch.cat(ids)
    used = len({(p, int(c)) for p in range(ids.shape[1]) for c in ids[:, p]})
    assert record["codebook_per_position"] and record["codebook_used_codes"] == used
    assert record["codebook_usage"] == pytest.approx(used / (TINY.tokens * TINY.num_code))
