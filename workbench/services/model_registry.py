"""Which models the app can use and a small cache of the loaded ones.

A model choice in the UI is a string: ``"default"`` (the embedded model), ``"default:comparison"``
(the embedded default's twin trained with the other stage-2 recipe, when one ships), ``"default:titok"`` (the
TiTok baseline trained beside it, when it ships), ``"default:teacher"``, a folder inside the
workspace (relative or absolute) or, when online, a Hugging Face hub id ``owner/name``. Loaded
models are kept (least recently used out) and keyed by folder + weights mtime, so a checkpoint
rewritten by a training run is reloaded rather than served stale. Every model handed out (and the
teacher) lives on the app's device, moved there by its :class:`Placement`. Each model gets one warm-up
pass on load because the first forward is several times slower than the rest.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from core import MaskGITGenerator, MaskGITVQGAN, SFTok, load_pretrained_as
from core.checkpoint import WEIGHT_FILES, CheckpointError
from core.config import TeacherConfig
from core.tokenizer import TeacherTokenizer, Tokenizer, as_tokenizer, load_tokenizer

from trainers.data.labels import CLASS_NAMES_FILE  # optional beside a generator's weights: names by class id

from workbench.io.tokenizer_sources import find_tokenizers, folder_family
from workbench.io.workspace import PathRefused, Workspace, model_type_of
from workbench.services.devices import Placement
from workbench.services.lru import LRU

DEFAULT_CHOICE = "default"
COMPARISON_CHOICE = "default:comparison"
TEACHER_CHOICE = "default:teacher"  # the embedded MaskGIT-VQGAN teacher, as a one-step tokenizer
TITOK_CHOICE = "default:titok"  # the embedded TiTok baseline (SFTok's stage-1 recipe, one-step decoder)
EMBEDDED_FOLDERS = (DEFAULT_CHOICE, COMPARISON_CHOICE, TITOK_CHOICE)  # choices naming a shipped tokenizer folder
TOKENIZERS = "tokenizer"  # choices(TOKENIZERS): every family core.tokenizer loads, not only SFTok
RELEASED_TEACHER_SIZE = 256  # the official teacher's image size (16 x 16 codes)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "assets" / "default" / "sftok"
DEFAULT_TEACHER_DIR = REPO_ROOT / "assets" / "default" / "teacher"
DEFAULT_GENERATOR_DIR = REPO_ROOT / "assets" / "default" / "generator"
# The embedded default's twin: the same stage 3 from the other stage-2 recipe (vanilla context for an SFVR default),
# so SFVR against vanilla is on the screens without training anything.
DEFAULT_COMPARISON_DIR = REPO_ROOT / "assets" / "default" / "sftok-vanilla"
# A TiTok trained by SFTok's stage-1 recipe on the default's data and teacher, so SFTok against the one-step tokenizer
# it improves on is on the screens offline (its card: assets/default/TITOK_CARD.md).
DEFAULT_TITOK_DIR = REPO_ROOT / "assets" / "default" / "titok"
BUILD_HINT = "build it with `make default-model`, or start the app with --model PATH"


class ModelUnavailable(RuntimeError):
    """A model choice cannot be loaded; the message says which and why, in words for the UI."""


def missing_default_message(folder: Path) -> str:
    return f"The default model folder {folder} is missing (it needs config.json and model.safetensors): {BUILD_HINT}."


@dataclass
class LoadedModel:
    key: str  # identifies weights: used in decode-cache keys
    label: str  # what the UI shows
    model: nn.Module


@dataclass
class LoadedTokenizer:
    key: str  # identifies weights, as LoadedModel.key
    label: str
    tokenizer: Tokenizer


Loaded = TypeVar("Loaded", LoadedModel, LoadedTokenizer)


def hub_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes")


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def class_names(folder: Path) -> list[str]:
    """A generator folder's class names (``classes.json``), or [] when it has none or it is unreadable."""
    try:
        names = json.loads((folder / CLASS_NAMES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def _weights_mtime(folder: Path) -> int:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return (folder / name).stat().st_mtime_ns
    return 0


def _source_mtime(location: Path | str) -> int:
    """A tokenizer source's version for cache keys: its weights' mtime (a folder's weights file, or the file)."""
    if not isinstance(location, Path):
        return 0
    weights = location if location.is_file() else location / "ckpt.pth"  # a file, or a ReVQ release folder
    return weights.stat().st_mtime_ns if weights.is_file() else _weights_mtime(location)


@torch.no_grad()
def warm_up(model: nn.Module, placement: Placement) -> None:
    """One tiny forward on the model's device so the first user request does not pay kernel set-up."""
    if isinstance(model, SFTok):
        cfg = model.config
        ids = placement.tensor(torch.zeros(1, cfg.num_latent_tokens, dtype=torch.long))
        model.decode_steps(ids, num_steps=2, temperature=0.0, previews=True)
        model.encode(placement.tensor(torch.zeros(1, 3, cfg.image_size, cfg.image_size)))
    elif isinstance(model, MaskGITGenerator):
        model.generate(placement.tensor(torch.zeros(1, dtype=torch.long)), num_steps=1, guidance_scale=0.0,
                       generator=placement.generator(0))


class ModelRegistry:
    """Resolves UI model choices to loaded models; thread-safe, bounded."""

    def __init__(self, workspace: Workspace, default_model: Path = DEFAULT_MODEL_DIR,
                 teacher: Path | None = DEFAULT_TEACHER_DIR, capacity: int = 3,
                 default_generator: Path | None = DEFAULT_GENERATOR_DIR, comparison: Path | None = None,
                 placement: Placement | None = None, titok: Path | None = None) -> None:
        self.workspace = workspace
        self.placement = placement or Placement("cpu")
        self.default_model = Path(default_model)
        self.comparison = Path(comparison) if comparison is not None else None
        self.titok = Path(titok) if titok is not None else None
        self.default_generator = Path(default_generator) if default_generator is not None else None
        self.teacher_dir = Path(teacher) if teacher is not None else None
        self.capacity = capacity
        self._models: LRU[str, LoadedModel | LoadedTokenizer] = LRU(capacity)
        self._teacher: MaskGITVQGAN | None = None
        self._lock = threading.RLock()

    @property
    def device(self) -> torch.device:
        return self.placement.device

    # -- choices ------------------------------------------------------------------------------------
    def choices(self, model_type: str = "sftok") -> list[tuple[str, str]]:
        """(label, value) pairs for a dropdown: the default model (tokenizers only) and workspace folders."""
        out: list[tuple[str, str]] = []
        if model_type == "sftok":
            out.append((f"embedded default ({self.default_model.name})", DEFAULT_CHOICE))
            if self.comparison_present():
                out.append((f"embedded comparison ({self.comparison.name})", COMPARISON_CHOICE))
        elif model_type == "generator" and self._default_generator_present():
            out.append(("embedded default generator", DEFAULT_CHOICE))
        elif model_type == TOKENIZERS:
            return self._tokenizer_choices()
        for folder in self.workspace.model_folders((model_type,)):
            shown = self.workspace.display(folder)
            out.append((shown, shown))
        return out

    def _tokenizer_choices(self) -> list[tuple[str, str]]:
        """The SFTok choices, the embedded teacher, and every tokenizer folder or release file found (family shown)."""
        out = [(label, value) for label, value in self.choices("sftok")[:2] if value in (DEFAULT_CHOICE, COMPARISON_CHOICE)]
        if self.titok_present():
            out.append(("embedded TiTok (one step)", TITOK_CHOICE))
        if self.teacher_dir is not None and (self.teacher_dir / "config.json").is_file():
            out.append(("embedded teacher (MaskGIT-VQGAN, one step)", TEACHER_CHOICE))
        for source in find_tokenizers(self.workspace):
            shown = self.workspace.display(source.path)
            out.append((f"{shown} ({source.family_name})", shown))
        return out

    def comparison_present(self) -> bool:
        """Whether the embedded default's other-recipe twin is there to offer."""
        return self.comparison is not None and (self.comparison / "config.json").is_file()

    def titok_present(self) -> bool:
        """Whether the embedded TiTok baseline is there to offer (it renders through the teacher)."""
        return self.titok is not None and (self.titok / "config.json").is_file()

    def _default_generator_present(self) -> bool:
        return self.default_generator is not None and (self.default_generator / "config.json").is_file()

    def class_names(self, choice: str) -> list[str]:
        """Class names of a generator choice ([] when unknown); never raises."""
        try:
            location = self._locate(choice, "generator")[1]
        except ModelUnavailable:
            return []
        return class_names(location) if isinstance(location, Path) else []

    def _locate(self, choice: str, model_type: str = "sftok") -> tuple[str, Path | str]:
        """(label, folder or hub id) for a choice, or :class:`ModelUnavailable`."""
        text = (choice or "").strip()
        if text in ("", DEFAULT_CHOICE) and model_type == "generator":
            if not self._default_generator_present():
                raise ModelUnavailable("generator: no embedded default generator; train one on the Train screen "
                                       "(stage 'generator') or copy a saved generator folder into the workspace")
            return "embedded default generator", self.default_generator
        if text == COMPARISON_CHOICE:
            if not self.comparison_present():
                raise ModelUnavailable(f"{text}: no embedded comparison model ({self.comparison or 'none configured'}); "
                                       f"{BUILD_HINT}")
            return "embedded comparison", self.comparison
        if text == TITOK_CHOICE:
            if not self.titok_present():
                raise ModelUnavailable(f"{text}: no embedded TiTok ({self.titok or 'none configured'}); {BUILD_HINT}")
            return "embedded TiTok", self.titok
        if text in ("", DEFAULT_CHOICE):
            if not (self.default_model / "config.json").is_file():
                raise ModelUnavailable(missing_default_message(self.default_model))
            return "embedded default", self.default_model
        try:
            return text, self.workspace.resolve(text)
        except PathRefused as err:
            if _looks_like_hub_id(text) and not (self.workspace.root / text).exists():
                if not hub_allowed():
                    raise ModelUnavailable(f"{text}: Hugging Face hub ids need internet access, and this app "
                                           "runs offline (HF_HUB_OFFLINE=1); download the repo and put it "
                                           "in the workspace instead") from err
                return text, text
            raise ModelUnavailable(str(err)) from err

    def locate_embedded(self, choice: str) -> tuple[str, Path]:
        """(label, folder) of an embedded SFTok or TiTok choice (``EMBEDDED_FOLDERS``); ModelUnavailable saying why
        when that folder is not there."""
        label, location = self._locate(choice)
        return label, Path(location)

    # -- loading ------------------------------------------------------------------------------------
    def get(self, choice: str, model_type: str = "sftok") -> LoadedModel:
        label, location = self._locate(choice, model_type)
        if isinstance(location, Path):
            declared = model_type_of(location)
            if declared is None:
                raise ModelUnavailable(f"{label}: not a saved model folder (needs config.json and "
                                       f"one of {', '.join(WEIGHT_FILES)})")
            if declared != model_type:
                raise ModelUnavailable(f"{label}: holds a {declared!r} model, this screen needs a {model_type!r} model")
            key = f"{location}@{_weights_mtime(location)}"
        else:
            key = f"hub:{location}"

        def load() -> LoadedModel:
            model = load_pretrained_as(location, SFTok if model_type == "sftok" else MaskGITGenerator)
            model = self.placement.model(model.eval())
            if isinstance(model, SFTok) and not model.has_pixel_head:
                model.attach_teacher(self.teacher())
            warm_up(model, self.placement)
            return LoadedModel(key=key, label=label, model=model)

        return self._cached(key, label, load)

    def _cached(self, key: str, label: str, load: Callable[[], Loaded]) -> Loaded:
        """The entry cached under ``key``, else ``load()``'s, cached; one load at a time (they are big). A checkpoint
        that does not load becomes ModelUnavailable naming ``label``."""
        with self._lock:
            cached = self._models.get(key)
            if cached is not None:
                return cached  # type: ignore[return-value]  # a key only ever holds one kind (its prefix says which)
            try:
                loaded = load()
            except CheckpointError as err:
                raise ModelUnavailable(f"{label}: {err}") from err
            self._models.put(key, loaded)
            return loaded

    def teacher_if_present(self) -> MaskGITVQGAN | None:
        """The teacher when its files are there and load; None otherwise (for measurements that can do without)."""
        try:
            return self.teacher()
        except ModelUnavailable:
            return None

    def teacher(self) -> MaskGITVQGAN:
        """The frozen teacher that renders pixels for stage-1/2 models (no pixel head of their own)."""
        with self._lock:
            if self._teacher is None:
                if self.teacher_dir is None or not (self.teacher_dir / "config.json").is_file():
                    raise ModelUnavailable(
                        f"this stage-1/2 model has no pixel head and needs the teacher at {self.teacher_dir} "
                        f"to render pixels; {BUILD_HINT}")
                try:
                    teacher = load_pretrained_as(self.teacher_dir, MaskGITVQGAN, "teacher").eval()
                    self._teacher = self.placement.model(teacher)
                except CheckpointError as err:
                    raise ModelUnavailable(str(err)) from err
            return self._teacher

    # -- any tokenizer --------------------------------------------------------------------------------
    def tokenizer(self, choice: str) -> LoadedTokenizer:
        """Any choice of ``choices(TOKENIZERS)`` behind the ``core.tokenizer`` interface, on the app's device.
        SFTok folders share :meth:`get`'s cache with the other screens; stage-1/2 models render through the teacher."""
        text = (choice or "").strip()
        if text == TEACHER_CHOICE:
            teacher = self.teacher()
            return LoadedTokenizer(f"teacher:{self.teacher_dir}@{_weights_mtime(self.teacher_dir)}", "embedded teacher",
                                   TeacherTokenizer(teacher, self.teacher_image_size(teacher.config)))
        label, location = self._locate(text)
        if text in ("", DEFAULT_CHOICE, COMPARISON_CHOICE) or (isinstance(location, Path) and folder_family(location) == "sftok"):
            loaded = self.get(text)
            return LoadedTokenizer(loaded.key, loaded.label, as_tokenizer(loaded.model))
        key = f"tok:{location}@{_source_mtime(location)}"

        def load() -> LoadedTokenizer:
            tok = load_tokenizer(location, self.device, teacher=self.teacher_if_present())
            self.placement.model(tok.module)
            if isinstance(tok, TeacherTokenizer):
                tok = TeacherTokenizer(tok.module, self.teacher_image_size(tok.module.config))
            with torch.no_grad():  # warm-up, as for SFTok: the first pass pays kernel set-up
                size = tok.info.image_size
                tok.reconstruct(self.placement.tensor(torch.zeros(1, 3, size, size)))
            return LoadedTokenizer(key, label, tok)

        return self._cached(key, label, load)

    def teacher_image_size(self, config: TeacherConfig) -> int:
        """The image size a teacher works at: the embedded default's when it is that model's teacher, else the
        released teacher's (a folder's config.json does not record it; the network is convolutional)."""
        try:
            meta = json.loads((self.default_model / "config.json").read_text())
            default = meta.get("config", meta)
            if TeacherConfig(**default["teacher"]) == config:
                return int(default["image_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return RELEASED_TEACHER_SIZE
