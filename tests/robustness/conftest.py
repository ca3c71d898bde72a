"""Fixtures for the robustness suite: a tiny random-init model on disk, a live app on loopback,
and the tally of what was tried (printed at the end of the run)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from tests.app_fixtures import free_port, save_tiny_model, write_sample_photos  # noqa: F401
from tests.robustness.tally import TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    if sum(TALLY.inputs.values()) or sum(TALLY.faults.values()):
        terminalreporter.write_line(TALLY.summary())


@pytest.fixture(scope="session")
def tally():
    return TALLY


def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def peak_rss_delta_mb(action: Callable[[], object]) -> float:
    """Peak resident memory above the current level while ``action`` runs, in MB (Linux).

    Resets the kernel's high-water mark (``clear_refs`` 5) first, so the peak is this action's,
    including memory that numpy/PIL allocate outside Python's allocator (which tracemalloc misses).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as err:
        pytest.skip(f"cannot reset the peak-RSS counter here ({err})")
    base = _status_kb("VmRSS")
    action()
    return (_status_kb("VmHWM") - base) / 1024


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "sftok")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    from PIL import Image

    folder = write_sample_photos(tmp_path_factory.mktemp("samples"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "black.png")
    return folder


@pytest.fixture(scope="session")
def served_app(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sample_dir: Path):
    """(context, url) of the real app (real launcher, loopback, free port), without the Train screen."""
    from workbench.ui import AppContext, ServeOptions, build_app, launch_app

    ctx = AppContext.create(tmp_path_factory.mktemp("workspace"), model_dir=tiny_model_dir, teacher_dir=None,
                            samples_dir=sample_dir, with_jobs=False)
    demo = build_app(ctx)
    _, url, _ = launch_app(demo, ctx, ServeOptions(port=free_port()), block=False)
    yield ctx, url
    demo.close()
    ctx.close()


@pytest.fixture()
def client(served_app):
    """A gradio_client with its own browser session."""
    from gradio_client import Client

    return Client(served_app[1], verbose=False, download_files=False)
