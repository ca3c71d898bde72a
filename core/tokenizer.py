"""One interface for every image tokenizer the workbench compares.

Evaluation, A/B comparison and the screens need three things of a tokenizer: images -> discrete ids,
ids -> pixels, and (where decoding is iterative) what each decoding step shows. SFTok decodes in up to
32 masked steps; the MaskGIT-VQGAN teacher, TiTok and ReVQ decode in one. Each family is wrapped by a
small adapter over its own ``nn.Module``; ``as_tokenizer`` picks it and ``register_tokenizer`` adds one.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .maskgit_vqgan import MaskGITVQGAN
from .revq import ReVQ
from .sftok import SFTok
from .titok import TiTok


@dataclass(frozen=True)
class TokenizerInfo:
    """What a comparison table needs to know of a tokenizer, without running it."""

    family: str  # "sftok", "maskgit_vqgan", "titok", "revq"
    image_size: int
    num_tokens: int
    codebook_size: int
    token_grid: tuple[int, int] | None  # (rows, cols) for 2-D tokens, None for a 1-D sequence
    max_steps: int  # 1 for one-step decoders
    default_steps: int


@dataclass
class StepView:
    """One decoding step as a picture: ``preview`` (B, 3, H, W) in [0, 1] after ``step + 1`` of ``num_steps``."""

    step: int
    num_steps: int
    preview: torch.Tensor


class Tokenizer(ABC):
    """Images in [0, 1] (B, 3, H, W) <-> ids (B, num_tokens) int64; ``module`` holds the weights."""

    info: TokenizerInfo
    module: nn.Module

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> token ids (B, num_tokens)."""

    @abstractmethod
    def decode(self, ids: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Token ids -> images in [0, 1]; ``num_steps`` beyond ``info.max_steps`` is refused."""

    def decode_trace(self, ids: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                     generator: torch.Generator | None = None) -> list[StepView]:
        """One picture per decoding step; a one-step decoder gives its one reconstruction."""
        self.check_steps(num_steps)
        return [StepView(0, 1, self.decode(ids))]

    def encode_each(self, images: torch.Tensor) -> torch.Tensor:
        """Ids of every image as if it were encoded alone: what a measurement over a dataset needs (its numbers
        must not move with the batch size). Equal to ``encode`` unless the quantiser couples a batch (SFTok)."""
        return self.encode(images)

    @abstractmethod
    def codebook(self) -> torch.Tensor:
        """The code vectors ids index, float on the model's device: (K, D) for one shared codebook, or
        (T, K, D) where every token position has its own (ReVQ)."""

    #: whether the ids are decoded by predicting the MaskGIT-VQGAN teacher's codes (SFTok, TiTok): then the
    #: teacher's own codebook usage on the same images is the reference a usage table puts beside them
    predicts_teacher_codes: bool = False

    def proxy_logits(self, ids: torch.Tensor) -> torch.Tensor | None:
        """(B, S, V) logits over the teacher's codes for its S grid cells where a one-step decoder predicts them
        (TiTok), so a screen can show its confidence per cell; None for the others."""
        return None

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.encode(images), num_steps, temperature, generator)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device: str | torch.device) -> "Tokenizer":
        self.module.to(device)
        # frozen helpers attached outside the state dict go along: the teacher a model without a pixel head
        # renders through, ReVQ's DC-AE
        for helper in (getattr(self.module, name, None) for name in ("_teacher", "_autoencoder")):
            if helper is not None:
                helper.to(device)
        return self

    def check_steps(self, num_steps: int | None) -> int:
        steps = self.info.default_steps if num_steps is None else int(num_steps)
        if not 1 <= steps <= self.info.max_steps:
            raise ValueError(f"num_steps: {self.info.family} decodes in 1..{self.info.max_steps} steps, got {steps}")
        return steps


class SFTokTokenizer(Tokenizer):
    """SFTok: 1-D latent tokens, multi-step decoding of the teacher's proxy codes."""

    MAX_STEPS = 32
    predicts_teacher_codes = True

    def __init__(self, model: SFTok) -> None:
        cfg = model.config
        self.module = model
        self.info = TokenizerInfo("sftok", cfg.image_size, cfg.num_latent_tokens, cfg.codebook_size, None,
                                  self.MAX_STEPS, cfg.num_steps)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        _, info = self.module.encode(images.to(self.device))
        return info["min_encoding_indices"].reshape(images.shape[0], -1)

    @torch.no_grad()
    def encode_each(self, images: torch.Tensor) -> torch.Tensor:
        # Sinkhorn balances all vectors of a call jointly; per_image balances each image's tokens alone
        _, info = self.module.encode(images.to(self.device), per_image=True)
        return info["min_encoding_indices"].reshape(images.shape[0], -1)

    @torch.no_grad()
    def codebook(self) -> torch.Tensor:
        return self.module.quantize.codebook().float()

    @torch.no_grad()
    def decode(self, ids, num_steps=None, temperature=None, generator=None):
        return self.module.decode_tokens(ids.to(self.device), self.check_steps(num_steps), temperature, generator)

    @torch.no_grad()
    def decode_trace(self, ids, num_steps=None, temperature=None, generator=None):
        # each step rendered on its own, as the Reconstruct screen streams them: the same pixels as there
        records = self.module.iter_decode_steps(ids.to(self.device), self.check_steps(num_steps), temperature,
                                                generator)
        return [StepView(r.step, r.num_steps, self.module.render_soft(r.logits)) for r in records]


class OneStepTokenizer(Tokenizer):
    """A tokenizer that decodes all its ids in one pass: any step count but 1 is refused."""

    @torch.no_grad()
    def decode(self, ids, num_steps=None, temperature=None, generator=None):
        self.check_steps(num_steps)
        return self.render(ids.to(self.device))

    def render(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids on the model's device -> images in [0, 1]."""
        return self.module.decode_tokens(ids)


class TeacherTokenizer(OneStepTokenizer):
    """The MaskGIT-VQGAN teacher: 2-D grid of codes (16 x 16 at 256 px), decoded in one pass."""

    def __init__(self, model: MaskGITVQGAN, image_size: int = 256) -> None:
        cfg = model.config
        side = image_size // 2 ** (len(cfg.channel_mult) - 1)
        self.module = model
        self.info = TokenizerInfo("maskgit_vqgan", image_size, side * side, cfg.codebook_size, (side, side), 1, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.encode(images.to(self.device)).reshape(images.shape[0], -1)

    @torch.no_grad()
    def codebook(self) -> torch.Tensor:
        return self.module.quantize.embedding.weight.float()

    def render(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module.decode_codes(ids)


class TiTokTokenizer(OneStepTokenizer):
    """TiTok: 1-D latent tokens, all proxy codes predicted in one pass, soft pixel decoding."""

    def __init__(self, model: TiTok) -> None:
        cfg = model.config
        self.module = model
        self.info = TokenizerInfo("titok", cfg.image_size, cfg.num_latent_tokens, cfg.codebook_size, None, 1, 1)

    predicts_teacher_codes = True

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.encode(images.to(self.device))[1]["min_encoding_indices"].reshape(images.shape[0], -1)

    @torch.no_grad()
    def codebook(self) -> torch.Tensor:
        return self.module.quantize.codes()

    @torch.no_grad()
    def proxy_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module.proxy_logits(self.module.quantize.lookup(ids.to(self.device)))


class ReVQTokenizer(OneStepTokenizer):
    """ReVQ: T ids, each local to its own position's codebook; one step (rectifier + DC-AE decoder)."""

    def __init__(self, model: ReVQ) -> None:
        cfg = model.config
        self.module = model
        self.info = TokenizerInfo("revq", cfg.image_size, cfg.tokens, cfg.num_code, None, 1, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.encode(images.to(self.device))

    @torch.no_grad()
    def codebook(self) -> torch.Tensor:
        return self.module.quantizer.embeddings.float()  # (T, K, D): position t's ids index codebook t

    def to(self, device: str | torch.device) -> "ReVQTokenizer":
        self.module.to(device)
        if self.module._autoencoder is not None:
            self.module._autoencoder.to(device)
        return self


Adapter = Callable[[nn.Module], Tokenizer]
_ADAPTERS: dict[type, Adapter] = {SFTok: SFTokTokenizer, MaskGITVQGAN: TeacherTokenizer}


def register_tokenizer(model_type: type, adapter: Adapter) -> None:
    """Make ``as_tokenizer`` wrap instances of ``model_type`` (a new family's module) with ``adapter``."""
    _ADAPTERS[model_type] = adapter


register_tokenizer(TiTok, TiTokTokenizer)
register_tokenizer(ReVQ, ReVQTokenizer)


def as_tokenizer(model: nn.Module | Tokenizer) -> Tokenizer:
    """The adapter for a loaded model (a Tokenizer passes through); a generator or unknown module is refused."""
    if isinstance(model, Tokenizer):
        return model
    for model_type, adapter in _ADAPTERS.items():
        if isinstance(model, model_type):
            return adapter(model)
    known = ", ".join(sorted(t.__name__ for t in _ADAPTERS))
    raise TypeError(f"{type(model).__name__} is not a tokenizer the workbench knows (known: {known})")


def load_tokenizer(path: str | os.PathLike, device: str | torch.device = "cpu",
                   teacher: MaskGITVQGAN | None = None,
                   autoencoder: nn.Module | str | os.PathLike | None = None) -> Tokenizer:
    """Any model folder or file ``load_pretrained`` reads, as a Tokenizer on ``device``.

    A stage-1/2 SFTok or stage-1 TiTok (no pixel head) renders through ``teacher``; ReVQ needs its DC-AE
    (``autoencoder``: a module or a local diffusers folder; else a ``dc_ae/`` folder beside ``ckpt.pth``).
    Without them the model is refused here, before any image is decoded."""
    from .checkpoint import CheckpointError
    from .pretrained import load_pretrained
    from .revq_files import DCAE_REPO, load_dcae

    model = load_pretrained(path)
    if isinstance(model, ReVQ):
        if autoencoder is not None:
            model.attach_autoencoder(load_dcae(autoencoder) if isinstance(autoencoder, (str, os.PathLike)) else autoencoder)
        if model._autoencoder is None:
            folder = Path(path) if Path(path).is_dir() else Path(path).parent
            raise CheckpointError(f"{path}: ReVQ needs its DC-AE: download {DCAE_REPO} into {folder / 'dc_ae'} "
                                  "(or pass autoencoder=FOLDER; loading it needs the diffusers package)")
    if isinstance(model, (SFTok, TiTok)) and not model.has_pixel_head:
        if teacher is None:
            stage = "stage-1/2 SFTok" if isinstance(model, SFTok) else "stage-1 TiTok"
            raise CheckpointError(f"{path}: a {stage} has no pixel head; pass the MaskGIT-VQGAN teacher")
        model.attach_teacher(teacher.to(device).eval())
    try:
        return as_tokenizer(model).to(device)
    except TypeError as err:
        raise CheckpointError(f"{path}: {err}") from err
