"""Fixtures for the app tests: a random-init tiny SFTok and generator saved like real checkpoints,
photo samples from scikit-image, and a real Gradio server on a free loopback port."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from core import GENERATOR_PRESETS, MaskGITGenerator, save_pretrained  # noqa: E402
from tests.app_fixtures import free_port, save_tiny_model, write_sample_photos  # noqa: E402,F401

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "sftok")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_photos(tmp_path_factory.mktemp("samples"))


def make_workspace(root: Path) -> Path:
    """A workspace holding a tiny generator checkpoint and a small default dataset."""
    from trainers.data.default_dataset import build_default_dataset

    torch.manual_seed(1)
    save_pretrained(MaskGITGenerator(GENERATOR_PRESETS["tiny"]).eval(), root / "checkpoints" / "generator")
    build_default_dataset(root / "datasets" / "small", image_size=64, train_crops=48, val_crops=16)
    return root


@pytest.fixture(scope="module")
def tokenizer_registry(workspace, tiny_model_dir):
    """A registry over a module's ``workspace`` fixture (its TiTok/teacher folders), the tiny SFTok as default and
    ``checkpoints/teacher`` as the app's teacher: what the tokenizer screens' tests share."""
    from workbench.io.workspace import Workspace
    from workbench.services.model_registry import ModelRegistry

    return ModelRegistry(Workspace.create(workspace), tiny_model_dir, teacher=workspace / "checkpoints" / "teacher",
                         default_generator=None)


@pytest.fixture(scope="module")
def photo(sample_dir) -> Path:
    return sample_dir / "coffee.png"


@pytest.fixture(scope="session")
def served_app(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sample_dir: Path):
    """(context, url) of a real app on 127.0.0.1 with the real launcher; closed at the end of the session."""
    with launched_app(tmp_path_factory.mktemp("workspace"), tiny_model_dir, sample_dir) as served:
        yield served


@contextlib.contextmanager
def launched_app(workspace_root: Path, model_dir: Path, samples: Path) -> Iterator[tuple[object, str]]:
    """(context, url) of a real app on 127.0.0.1 over a fresh workspace; closed on exit."""
    from workbench.ui import AppContext, ServeOptions, build_app, launch_app

    ctx = AppContext.create(make_workspace(workspace_root), model_dir=model_dir, teacher_dir=None, samples_dir=samples,
                            generator_dir=None)
    ctx.default_dataset_crops = 24
    demo = build_app(ctx)
    _, url, _ = launch_app(demo, ctx, ServeOptions(port=free_port()), block=False)
    try:
        yield ctx, url
    finally:
        demo.close()
        ctx.close(cancel_running=True)


@pytest.fixture(scope="session")
def client(served_app):
    from gradio_client import Client

    return Client(served_app[1], verbose=False, download_files=False)


def write_bad_images(folder: Path) -> dict[str, Path]:
    """One file per kind of bad or unusual upload; used by the image and client tests."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    paths = {}
    (folder / "not_image.png").write_text("this is a text file, not a PNG\n")
    paths["not_image"] = folder / "not_image.png"
    full = folder / "full.png"
    rgb.save(full)
    data = full.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    paths["truncated"] = folder / "truncated.png"
    Image.new("L", (20000, 20), 0).save(folder / "huge.png")
    paths["huge"] = folder / "huge.png"
    Image.new("1", (7000, 7000), 0).save(folder / "bomb.png")  # 49 MP in a few kB
    paths["bomb"] = folder / "bomb.png"
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    paths["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(np.full((32, 32), 65535 // 4, dtype=np.uint16)).save(folder / "deep16.png")
    paths["deep16"] = folder / "deep16.png"
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    paths["animated"] = folder / "animated.gif"
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    paths["alpha"] = folder / "alpha.png"
    return paths


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_bad_images(tmp_path_factory.mktemp("bad_images"))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A real one-node Slurm (munged, slurmctld, slurmd) for this session, with ``SLURM_CONF`` pointing
    at it; skipped, with the reason, where Slurm is not installed or its daemons do not start."""
    from tests.workbench.helpers.slurm_cluster import ClusterUnavailable, start_cluster

    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as err:
        pytest.skip(f"no Slurm test cluster: {err}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster
    cluster.stop()
