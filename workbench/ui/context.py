"""Everything the screens share, built once per app: workspace, model registry, decode cache, samples."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from workbench.services.decoding import DecodeService
from workbench.services.devices import Placement
from workbench.runs.manager import JobManager
from workbench.services.model_registry import DEFAULT_GENERATOR_DIR, DEFAULT_MODEL_DIR, DEFAULT_TEACHER_DIR, REPO_ROOT, ModelRegistry
from workbench.io.workspace import Workspace

DEFAULT_SAMPLES_DIR = REPO_ROOT / "assets" / "samples"
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class AppContext:
    workspace: Workspace
    registry: ModelRegistry
    service: DecodeService
    samples_dir: Path
    jobs: JobManager | None = None  # owns the workspace's metrics store; None = no Train screen
    default_dataset_crops: int = 4000  # training crops of the default dataset the Train screen builds

    @classmethod
    def create(cls, workspace_dir: str | Path, model_dir: str | Path = DEFAULT_MODEL_DIR,
               teacher_dir: str | Path | None = DEFAULT_TEACHER_DIR,
               samples_dir: str | Path = DEFAULT_SAMPLES_DIR, with_jobs: bool = True,
               launcher: Sequence[str] | None = None,
               generator_dir: str | Path | None = DEFAULT_GENERATOR_DIR,
               comparison_dir: str | Path | None = None, placement: Placement | None = None,
               titok_dir: str | Path | None = None) -> "AppContext":
        """``launcher`` replaces ``[python, launch_training.py]`` (tests use a fast stand-in);
        ``generator_dir`` is the embedded default generator (None: only workspace generators);
        ``comparison_dir`` the default's other-recipe twin, offered beside it (None: none); ``titok_dir`` the TiTok
        baseline trained on the default's data and teacher, offered to every tokenizer picker (None: none);
        ``placement`` the device every screen's models run on (None: the CPU)."""
        workspace = Workspace.create(workspace_dir)
        registry = ModelRegistry(workspace, Path(model_dir), Path(teacher_dir) if teacher_dir else None,
                                 default_generator=Path(generator_dir) if generator_dir else None,
                                 comparison=Path(comparison_dir) if comparison_dir else None, placement=placement,
                                 titok=Path(titok_dir) if titok_dir else None)
        jobs = JobManager(workspace.root, launcher=launcher) if with_jobs else None
        return cls(workspace, registry, DecodeService(registry), Path(samples_dir), jobs)

    def close(self, cancel_running: bool = False) -> None:
        """Stop watching jobs and release the store; runs keep going (the next app re-attaches them)
        unless ``cancel_running``."""
        if self.jobs is not None:
            self.jobs.close(cancel_running=cancel_running)

    @property
    def exports_dir(self) -> Path:
        """Where GIFs and other downloads are written (inside the workspace, served to the browser)."""
        path = self.workspace.root / "exports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def samples(self) -> dict[str, Path]:
        """Sample images by file stem, sorted."""
        if not self.samples_dir.is_dir():
            return {}
        files = sorted(p for p in self.samples_dir.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
        return {p.stem: p for p in files}
