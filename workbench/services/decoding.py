"""Decode once per request, serve every scrubber position from the cache.

:class:`DecodeService` turns (model, image or tokens, settings) into a :class:`StepTrace` with all
steps, the soft previews (one batched pixel-head pass) and per-step metrics, and stores it under a
key derived from the model weights, the image pixels and the settings. The UI keeps only that key.
Inputs and random generators reach the model's device through the registry's :class:`Placement`; pictures
and metrics are computed from copies brought back to the CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from analysis.image_metrics import psnr, ssim
from analysis.pixel_baselines import thumbnail_psnr
from analysis.steps import teacher_context_passes
from core import MaskGITGenerator, MaskGITVQGAN, SFTok
from core.precision import Bf16Support, bf16_support, effective_precision
from core.sftok import PRECISIONS

from workbench.io.images import image_digest, image_to_tensor, tensor_to_uint8
from workbench.services.devices import Placement, working_on
from workbench.services.lru import LRU
from workbench.services.model_registry import ModelRegistry
from workbench.services.traces import StepTrace, trace_from_decode_steps, trace_from_generator_steps

MAX_TEMPERATURE = 10.0
REFERENCE_THUMBNAILS = (1, 4)  # the upload rebuilt from its mean colour and from a 4x4 thumbnail: scale for its PSNR
StepMetricFn = Callable[[torch.Tensor, torch.Tensor], dict[str, np.ndarray]]


class SettingsError(ValueError):
    """A decode setting is out of range; the message names it."""


@dataclass(frozen=True)
class DecodeSettings:
    """Knobs of one decode; validated on construction so callbacks can pass raw widget values."""

    num_steps: int = 8
    temperature: float = 1.0
    seed: int = 0
    precision: str = "fp32"  # "bf16": decoder passes and pixel head on bf16 weights, where bf16 is native

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SettingsError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        try:
            steps, temp, seed = int(self.num_steps), float(self.temperature), int(self.seed)
        except (TypeError, ValueError) as err:
            raise SettingsError(f"settings: steps, temperature and seed must be numbers ({err})") from err
        if steps != self.num_steps or not 1 <= steps <= 32:
            raise SettingsError(f"steps: must be a whole number in 1..32, got {self.num_steps}")
        if not 0.0 <= temp <= MAX_TEMPERATURE:
            raise SettingsError(f"temperature: must be in [0, {MAX_TEMPERATURE:g}], got {self.temperature}")
        if not 0 <= seed < 2 ** 63:
            raise SettingsError(f"seed: must be a non-negative integer, got {self.seed}")
        object.__setattr__(self, "num_steps", steps)
        object.__setattr__(self, "temperature", temp)
        object.__setattr__(self, "seed", seed)

    def generator(self, placement: Placement | None = None) -> torch.Generator:
        """The seeded random generator of this decode, on ``placement``'s device (CPU by default)."""
        return (placement or Placement("cpu")).generator(self.seed)


def default_step_metrics(previews: torch.Tensor, reference: torch.Tensor) -> dict[str, np.ndarray]:
    """PSNR and SSIM (official protocol: luma channel) of every step's preview against the input."""
    ref = reference.expand_as(previews)
    out = {"PSNR (dB)": psnr(previews, ref).numpy()}
    if min(previews.shape[-2:]) >= 11:
        out["SSIM"] = ssim(previews, ref).numpy()
    return out


def _key(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:24]


TEACHER_CONTEXT_PSNR = "PSNR, teacher's codes committed (dB)"
COMMITS_RIGHT = "new commits = teacher's code"


def teacher_codes_for(model: SFTok, teacher: MaskGITVQGAN | None, reference: torch.Tensor) -> torch.Tensor | None:
    """The teacher's codes of ``reference`` (1, S), or None when there is no teacher or its codes do not fit the model."""
    if teacher is None or teacher.config.codebook_size != model.config.proxy_vocab_size:
        return None
    codes = teacher.encode(reference)
    return codes.long() if tuple(codes.shape) == (1, model.config.num_proxy_codes) else None


def teacher_context_metrics(model: SFTok, ids: torch.Tensor, records: Sequence, targets: torch.Tensor,
                            reference: torch.Tensor) -> dict[str, np.ndarray]:
    """Per step: PSNR of the same pass with the teacher's codes at the committed slots (what multi-step decoding
    gives this decoder when its commits are right), and the share of the step's new commits that were right."""
    context = teacher_context_passes(model, ids, records, targets)
    forced = model.render_soft(torch.cat(context.logits)).cpu()
    reference = reference.cpu()
    return {TEACHER_CONTEXT_PSNR: psnr(forced, reference.expand_as(forced)).numpy(),
            COMMITS_RIGHT: (context.right / np.maximum(context.committed, 1.0)).astype(np.float32)}


@torch.no_grad()
def reconstruct_trace(model: SFTok, image: Image.Image, settings: DecodeSettings,
                      tokens: Sequence[int] | None = None, step_metrics: StepMetricFn = default_step_metrics,
                      teacher: MaskGITVQGAN | None = None, placement: Placement | None = None) -> StepTrace:
    """Encode ``image`` (or take ``tokens``), decode all steps with previews, measure each step; with a
    ``teacher`` whose codes fit the model, also each step with the teacher's codes at the committed slots.
    ``placement``: where the model lives (its inputs and generator are put there); CPU by default."""
    placement = placement or Placement("cpu")
    picture = image_to_tensor(image)
    reference = placement.tensor(picture)
    if tokens is None:
        _, info = model.encode(reference)
        ids = info["min_encoding_indices"].reshape(1, -1)
    else:
        ids = model.check_token_ids(placement.tensor(torch.as_tensor(list(tokens), dtype=torch.long).reshape(1, -1)))
    records = model.decode_steps(ids, settings.num_steps, settings.temperature, settings.generator(placement),
                                 previews=True, precision=settings.precision)
    agreement = None
    if settings.precision != "fp32":  # the same decode in fp32: how many final ids the bf16 decode kept
        reference_ids, _ = model.decode_ids(ids, settings.num_steps, settings.temperature, settings.generator(placement),
                                            last_logits=False)
        agreement = float((reference_ids == records[-1].ids_out).float().mean())
    previews = torch.cat([r.preview for r in records])
    if model.has_pixel_head:
        final, label = previews[-1:], "soft preview: softmax over codes mixed into codewords, pixel head"
    else:
        final = model.render_codes(records[-1].ids_out, settings.precision)
        label = "soft preview through the frozen teacher (final image: hard codes)"
    previews = previews.cpu()
    metrics = step_metrics(previews, picture)
    targets = teacher_codes_for(model, teacher, reference)
    if targets is not None:
        metrics.update(teacher_context_metrics(model, ids, records, targets, reference))
    references = {s: float(thumbnail_psnr(picture, s)[0]) for s in REFERENCE_THUMBNAILS}
    trace = trace_from_decode_steps(records, model.config.mask_id, tensor_to_uint8(previews), tensor_to_uint8(final)[0],
                                    ids[0].cpu().numpy().copy(), label, metrics, references)
    return dataclasses.replace(trace, precision=settings.precision, fp32_agreement=agreement)


@torch.no_grad()
def generate_trace(generator_model: MaskGITGenerator, tokenizer: SFTok, class_id: int, settings: DecodeSettings,
                   guidance_scale: float, placement: Placement | None = None) -> StepTrace:
    """Sample one image of ``class_id``; each step's preview decodes that step's candidate tokens.

    A partially masked token sequence cannot be decoded, so the preview of step k fills masked
    positions with the candidates drawn at step k (committed positions keep their ids); the last
    step's candidates are the final tokens. All previews are decoded in one batch.
    """
    cfg = generator_model.config
    if cfg.codebook_size != tokenizer.config.codebook_size or cfg.num_tokens != tokenizer.config.num_latent_tokens:
        raise SettingsError(f"generator: its tokens ({cfg.num_tokens} from a {cfg.codebook_size}-code book) do not fit "
                            f"this tokenizer ({tokenizer.config.num_latent_tokens} tokens, {tokenizer.config.codebook_size} codes)")
    if not 0 <= int(class_id) < cfg.num_classes:
        raise SettingsError(f"class: must be in 0..{cfg.num_classes - 1}, got {class_id}")
    placement = placement or Placement("cpu")
    ids, steps = generator_model.generate(placement.tensor(torch.tensor([int(class_id)])), settings.num_steps,
                                          float(guidance_scale), settings.temperature,
                                          generator=settings.generator(placement))
    candidates = torch.cat([s.candidates for s in steps])
    # the tokenizer's default step count
    images = tokenizer.decode_tokens(candidates, temperature=0.0, precision=settings.precision)
    agreement = None
    if settings.precision != "fp32":  # final proxy ids of the previews' decodes, bf16 against fp32
        low, _ = tokenizer.decode_ids(candidates, temperature=0.0, last_logits=False, precision=settings.precision)
        full, _ = tokenizer.decode_ids(candidates, temperature=0.0, last_logits=False)
        agreement = float((low == full).float().mean())
    previews = tensor_to_uint8(images)
    committed = np.array([float((s.ids_out != cfg.mask_id).float().mean()) for s in steps], dtype=np.float32)
    confidence = np.array([float(s.confidence.mean()) for s in steps], dtype=np.float32)
    metrics = {"committed fraction": committed, "mean confidence": confidence}
    trace = trace_from_generator_steps(steps, cfg.mask_id, previews, previews[-1], ids[0].cpu().numpy().copy(),
                                       "tokens so far, masked positions filled with this step's candidates", metrics)
    return dataclasses.replace(trace, precision=settings.precision, fp32_agreement=agreement)


class TraceCache(LRU[str, StepTrace]):
    """Bounded LRU of traces by request key."""

    def __init__(self, capacity: int = 64) -> None:
        super().__init__(capacity)


class TraceExpired(LookupError):
    """The cached decode a UI session refers to was evicted; the user has to decode again.

    Not a ``KeyError``: its ``str()`` would wrap the message in quotes."""


class DecodeService:
    """Cached reconstruction and generation for the UI; one decode per distinct request."""

    def __init__(self, registry: ModelRegistry, capacity: int = 64, step_metrics: StepMetricFn = default_step_metrics) -> None:
        self.registry = registry
        self.cache = TraceCache(capacity)
        self.step_metrics = step_metrics
        self._compute_lock = threading.Lock()  # one decode at a time: 2 CPU cores, no thrashing
        self.decodes = 0  # number of real decodes run (the cache's misses); tests read it
        self.bf16: Bf16Support = bf16_support(registry.device)  # asked once: whether bf16 decodes are offered

    def runnable(self, settings: DecodeSettings) -> tuple[DecodeSettings, str]:
        """``settings`` with the precision this device really runs (bf16 only where native), and why not ('')."""
        precision, note = effective_precision(settings.precision, self.registry.device, self.bf16)
        return dataclasses.replace(settings, precision=precision), note

    def _cached(self, key: str, compute: Callable[[], StepTrace]) -> tuple[str, StepTrace]:
        trace = self.cache.get(key)
        if trace is None:
            with self._compute_lock:
                trace = self.cache.get(key)
                if trace is None:
                    trace = compute()
                    self.decodes += 1
                    self.cache.put(key, trace)
        return key, trace

    def reconstruct(self, model_choice: str, image: Image.Image, settings: DecodeSettings,
                    tokens: Sequence[int] | None = None) -> tuple[str, StepTrace]:
        loaded = self.registry.get(model_choice)
        settings, note = self.runnable(settings)
        token_part = "encode" if tokens is None else ",".join(str(int(t)) for t in tokens)
        key = _key("rec", loaded.key, image_digest(image), settings, token_part)
        task = (f"decoding 1 image in {settings.num_steps} steps with a preview of every step "
                f"({loaded.label}, {self.registry.device})")

        def compute() -> StepTrace:
            with working_on(task, "the number of decoding steps, or choose a smaller tokenizer"):
                return reconstruct_trace(loaded.model, image, settings, tokens, self.step_metrics,
                                         self.registry.teacher_if_present(), self.registry.placement)
        return self._noted(*self._cached(key, compute), note)

    def generate(self, generator_choice: str, tokenizer_choice: str, class_id: int, settings: DecodeSettings,
                 guidance_scale: float) -> tuple[str, StepTrace]:
        gen = self.registry.get(generator_choice, model_type="generator")
        tok = self.registry.get(tokenizer_choice)
        settings, note = self.runnable(settings)
        key = _key("gen", gen.key, tok.key, int(class_id), settings, float(guidance_scale))
        task = (f"generating 1 image in {settings.num_steps} steps and decoding {settings.num_steps} previews "
                f"({gen.label}, {self.registry.device})")

        def compute() -> StepTrace:
            with working_on(task, "the number of generation steps (each step is one preview image)"):
                return generate_trace(gen.model, tok.model, class_id, settings, guidance_scale, self.registry.placement)
        return self._noted(*self._cached(key, compute), note)

    @staticmethod
    def _noted(key: str, trace: StepTrace, note: str) -> tuple[str, StepTrace]:
        """The cached trace, carrying why the requested precision was not used (the cache holds it without)."""
        return key, (dataclasses.replace(trace, precision_note=note) if note else trace)

    def get(self, key: str) -> StepTrace:
        trace = self.cache.get(key) if key else None
        if trace is None:
            raise TraceExpired("this decode is no longer cached: press Reconstruct / Generate again")
        return trace
