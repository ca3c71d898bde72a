"""Decode once per request, serve every scrubber position from the cache.

:class:`DecodeService` turns (model, image or tokens, settings) into a :class:`StepTrace` with all
steps, their soft previews and per-step metrics, and stores it under a key derived from the model weights,
the image pixels and the settings. The UI keeps only that key. Reconstruct takes any tokenizer
(``registry.tokenizer``): SFTok decodes step by step as below; a one-step tokenizer (TiTok, ReVQ, the teacher)
gives a trace of one step through the ``core.tokenizer`` interface (:mod:`workbench.services.one_step`). ``*_stream`` yield the trace after every
step while it is decoded (:mod:`workbench.services.step_previews` keeps each step's preview cheap), so a
screen shows step 1 at once; only complete traces are cached.
Inputs and random generators reach the model's device through the registry's :class:`Placement`; pictures
and metrics are computed from copies brought back to the CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from analysis.image_metrics import psnr, ssim
from analysis.pixel_baselines import thumbnail_psnr
from analysis.steps import teacher_context_passes
from core import MaskGITGenerator, MaskGITVQGAN, SFTok
from core.inputs import check_token_ids
from core.precision import Bf16Support, bf16_support, effective_precision
from core.sftok import PRECISIONS
from core.tokenizer import SFTokTokenizer, Tokenizer

from workbench.io.images import image_digest, image_to_tensor, tensor_to_uint8
from workbench.services.devices import Placement, working_on
from workbench.services.lru import LRU
from workbench.services.model_registry import LoadedTokenizer, ModelRegistry
from workbench.services.one_step import family_name, ignored_settings, one_step_cells, trace_from_one_step
from workbench.services.step_previews import preview_label, preview_skip_levels, render_ids_preview, render_step_preview
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


def _token_part(tokens: Sequence[int] | None) -> str:
    """The cache-key part of a decode's tokens: the encoder's own, or the edited list."""
    return "encode" if tokens is None else ",".join(str(int(t)) for t in tokens)


def teacher_codes(teacher: MaskGITVQGAN | None, reference: torch.Tensor, vocab: int, cells: int) -> torch.Tensor | None:
    """The teacher's codes of ``reference`` (1, cells), or None when there is no teacher or its codes are not
    ``cells`` codes of a ``vocab``-code book (another teacher's than the one predicted)."""
    if teacher is None or teacher.config.codebook_size != vocab:
        return None
    codes = teacher.encode(reference)
    return codes.long() if tuple(codes.shape) == (1, cells) else None


def teacher_context_metrics(model: SFTok, ids: torch.Tensor, records: Sequence, targets: torch.Tensor,
                            reference: torch.Tensor) -> dict[str, np.ndarray]:
    """Per step: PSNR of the same pass with the teacher's codes at the committed slots (what multi-step decoding
    gives this decoder when its commits are right), and the share of the step's new commits that were right."""
    context = teacher_context_passes(model, ids, records, targets)
    forced = model.render_soft(torch.cat(context.logits)).cpu()
    reference = reference.cpu()
    return {TEACHER_CONTEXT_PSNR: psnr(forced, reference.expand_as(forced)).numpy(),
            COMMITS_RIGHT: (context.right / np.maximum(context.committed, 1.0)).astype(np.float32)}


def _last(traces: Iterator[StepTrace]) -> StepTrace:
    return deque(traces, maxlen=1)[0]


def _concat_rows(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-step metric rows {name: (1,)} -> {name: (T,)}."""
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]} if rows else {}


def reconstruct_trace(model: SFTok, image: Image.Image, settings: DecodeSettings,
                      tokens: Sequence[int] | None = None, step_metrics: StepMetricFn = default_step_metrics,
                      teacher: MaskGITVQGAN | None = None, placement: Placement | None = None) -> StepTrace:
    """The complete trace: the last of :func:`iter_reconstruct_trace`."""
    return _last(iter_reconstruct_trace(model, image, settings, tokens, step_metrics, teacher, placement))


@torch.no_grad()
def iter_reconstruct_trace(model: SFTok, image: Image.Image, settings: DecodeSettings,
                           tokens: Sequence[int] | None = None, step_metrics: StepMetricFn = default_step_metrics,
                           teacher: MaskGITVQGAN | None = None, placement: Placement | None = None
                           ) -> Iterator[StepTrace]:
    """Encode ``image`` (or take ``tokens``) and decode it, yielding the trace after every step: the steps so
    far with their previews and metrics (``planned_steps`` says how many will come), then the complete trace,
    which adds what needs every step: with a ``teacher`` whose codes fit the model, each step with the
    teacher's codes at the committed slots; for bf16, the final-id agreement with fp32.
    Previews: :mod:`workbench.services.step_previews` (every step in full on small models; on large ones the
    intermediate steps at half size). Metrics are per step (``step_metrics`` of that step's preview).
    ``placement``: where the model lives (its inputs and generator are put there); CPU by default."""
    placement = placement or Placement("cpu")
    picture = image_to_tensor(image)
    reference = placement.tensor(picture)
    if tokens is None:
        _, info = model.encode(reference)
        ids = info["min_encoding_indices"].reshape(1, -1)
    else:
        ids = model.check_token_ids(placement.tensor(torch.as_tensor(list(tokens), dtype=torch.long).reshape(1, -1)))
    token_ids = ids[0].cpu().numpy().copy()
    skip = preview_skip_levels(model)
    label = preview_label(model, skip, settings.num_steps)
    references = {s: float(thumbnail_psnr(picture, s)[0]) for s in REFERENCE_THUMBNAILS}
    records, pictures, rows = [], [], []
    for record in model.iter_decode_steps(ids, settings.num_steps, settings.temperature, settings.generator(placement),
                                          precision=settings.precision):
        last = record.step == record.num_steps - 1
        preview = render_step_preview(model, record.logits, settings.precision, 0 if last else skip).cpu()
        records.append(record)
        pictures.append(tensor_to_uint8(preview)[0])
        rows.append(step_metrics(preview, picture))
        if not last:
            yield trace_from_decode_steps(records, model.config.mask_id, np.stack(pictures), pictures[-1], token_ids,
                                          label, _concat_rows(rows), references, settings.num_steps)
    agreement = None
    if settings.precision != "fp32":  # the same decode in fp32: how many final ids the bf16 decode kept
        reference_ids, _ = model.decode_ids(ids, settings.num_steps, settings.temperature, settings.generator(placement),
                                            last_logits=False)
        agreement = float((reference_ids == records[-1].ids_out).float().mean())
    final = pictures[-1] if model.has_pixel_head else tensor_to_uint8(
        model.render_codes(records[-1].ids_out, settings.precision))[0]
    metrics = _concat_rows(rows)
    targets = teacher_codes(teacher, reference, model.config.proxy_vocab_size, model.config.num_proxy_codes)
    if targets is not None:
        metrics.update(teacher_context_metrics(model, ids, records, targets, reference))
    trace = trace_from_decode_steps(records, model.config.mask_id, np.stack(pictures), final, token_ids, label, metrics,
                                    references, settings.num_steps)
    yield dataclasses.replace(trace, precision=settings.precision, fp32_agreement=agreement)


@torch.no_grad()
def iter_one_step_trace(tokenizer: Tokenizer, image: Image.Image, tokens: Sequence[int] | None = None,
                        step_metrics: StepMetricFn = default_step_metrics, teacher: MaskGITVQGAN | None = None,
                        placement: Placement | None = None) -> Iterator[StepTrace]:
    """Encode ``image`` (or take ``tokens``, checked against the tokenizer's token count and codebook) and decode it
    in the tokenizer's one pass: one complete trace of one step (:mod:`workbench.services.one_step`), its preview
    and final image the reconstruction, its metrics ``step_metrics`` of it. Where the grid is a prediction of the
    teacher's codes (TiTok) and a ``teacher`` with such codes is there, also the share of them that are right.
    A generator, for :class:`DecodeService`'s stream, as :func:`iter_reconstruct_trace`."""
    placement = placement or Placement("cpu")
    info = tokenizer.info
    picture = image_to_tensor(image)
    reference = placement.tensor(picture)
    if tokens is None:
        ids = tokenizer.encode(reference).reshape(1, -1)
    else:
        ids = placement.tensor(check_token_ids(torch.as_tensor(list(tokens), dtype=torch.long).reshape(1, -1),
                                               info.num_tokens, info.codebook_size))
    preview = tokenizer.decode(ids)[:1].float().cpu()
    cells = one_step_cells(tokenizer, ids)
    metrics = dict(step_metrics(preview, picture))
    targets = teacher_codes(teacher, reference, cells.vocab, len(cells.ids)) if cells.scored else None
    if targets is not None:
        metrics[COMMITS_RIGHT] = np.array([float((targets[0].cpu().numpy() == cells.ids).mean())], dtype=np.float32)
    references = {s: float(thumbnail_psnr(picture, s)[0]) for s in REFERENCE_THUMBNAILS}
    yield trace_from_one_step(cells, tensor_to_uint8(preview)[0], ids[0].cpu().numpy().copy(),
                              f"{family_name(info)}'s reconstruction, decoded in one pass", metrics, references)


def generate_trace(generator_model: MaskGITGenerator, tokenizer: SFTok, class_id: int, settings: DecodeSettings,
                   guidance_scale: float, placement: Placement | None = None) -> StepTrace:
    """The complete trace: the last of :func:`iter_generate_trace`."""
    return _last(iter_generate_trace(generator_model, tokenizer, class_id, settings, guidance_scale, placement))


@torch.no_grad()
def iter_generate_trace(generator_model: MaskGITGenerator, tokenizer: SFTok, class_id: int, settings: DecodeSettings,
                        guidance_scale: float, placement: Placement | None = None) -> Iterator[StepTrace]:
    """Sample one image of ``class_id``, yielding the trace as each step's preview is decoded, the complete one last.

    A partially masked token sequence cannot be decoded, so the preview of step k fills masked
    positions with the candidates drawn at step k (committed positions keep their ids); the last
    step's candidates are the final tokens. The tokens of all steps are sampled first (the cheap part);
    the previews, one tokenizer decode each, follow one at a time (half size before the last on large
    tokenizers, as :mod:`workbench.services.step_previews` says).
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
    committed = np.array([float((s.ids_out != cfg.mask_id).float().mean()) for s in steps], dtype=np.float32)
    confidence = np.array([float(s.confidence.mean()) for s in steps], dtype=np.float32)
    metrics = {"committed fraction": committed, "mean confidence": confidence}
    skip = preview_skip_levels(tokenizer)
    label = "tokens so far, masked positions filled with this step's candidates"
    if skip and len(steps) > 1:
        label += f"; steps 1-{len(steps) - 1} rendered at half size and upscaled, step {len(steps)} in full"
    token_ids = ids[0].cpu().numpy().copy()
    pictures: list[np.ndarray] = []
    for k, step in enumerate(steps):  # the tokenizer's default step count, temperature 0
        last = k == len(steps) - 1
        pictures.append(tensor_to_uint8(render_ids_preview(tokenizer, step.candidates, settings.precision,
                                                           0 if last else skip).cpu())[0])
        done = {name: values[:k + 1] for name, values in metrics.items()}
        trace = trace_from_generator_steps(steps[:k + 1], cfg.mask_id, np.stack(pictures), pictures[-1], token_ids,
                                           label, done, len(steps))
        if not last:
            yield trace
    agreement = None
    if settings.precision != "fp32":  # final proxy ids of the previews' decodes, bf16 against fp32
        candidates = torch.cat([s.candidates for s in steps])
        low, _ = tokenizer.decode_ids(candidates, temperature=0.0, last_logits=False, precision=settings.precision)
        full, _ = tokenizer.decode_ids(candidates, temperature=0.0, last_logits=False)
        agreement = float((low == full).float().mean())
    yield dataclasses.replace(trace, precision=settings.precision, fp32_agreement=agreement)


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

    def _stream(self, key: str, compute: Callable[[], Iterator[StepTrace]], **notes: str
                ) -> Iterator[tuple[str, StepTrace]]:
        """(key, trace) after every step while the decode runs, the complete trace last; a cached decode comes
        complete at once. One decode at a time (2 CPU cores, no thrashing); only a complete trace is cached,
        so a stream abandoned half-way leaves nothing behind (the lock is released when it is closed)."""
        trace = self.cache.get(key)
        if trace is None:
            with self._compute_lock:
                trace = self.cache.get(key)
                if trace is None:
                    for trace in compute():
                        if not trace.complete:
                            yield self._noted(key, trace, **notes)
                    self.decodes += 1
                    self.cache.put(key, trace)
        yield self._noted(key, trace, **notes)

    def reconstruct(self, model_choice: str, image: Image.Image, settings: DecodeSettings,
                    tokens: Sequence[int] | None = None) -> tuple[str, StepTrace]:
        """The complete trace of :meth:`reconstruct_stream`."""
        return deque(self.reconstruct_stream(model_choice, image, settings, tokens), maxlen=1)[0]

    def reconstruct_stream(self, model_choice: str, image: Image.Image, settings: DecodeSettings,
                           tokens: Sequence[int] | None = None) -> Iterator[tuple[str, StepTrace]]:
        """Decode ``image`` (or ``tokens``) step by step: see :meth:`_stream`. Any tokenizer choice: SFTok in its
        steps, a one-step tokenizer in its one pass (:meth:`_one_step_stream`). Bad settings and missing models
        fail here, before anything is yielded."""
        loaded = self.registry.tokenizer(model_choice)
        if not isinstance(loaded.tokenizer, SFTokTokenizer):
            return self._one_step_stream(loaded, image, settings, tokens)
        model: SFTok = loaded.tokenizer.module  # SFTok keeps its own step-by-step decode, previews and bf16
        settings, note = self.runnable(settings)
        key = _key("rec", loaded.key, image_digest(image), settings, _token_part(tokens))
        task = (f"decoding 1 image in {settings.num_steps} steps with a preview of every step "
                f"({loaded.label}, {self.registry.device})")

        def compute() -> Iterator[StepTrace]:
            with working_on(task, "the number of decoding steps, or choose a smaller tokenizer"):
                yield from iter_reconstruct_trace(model, image, settings, tokens, self.step_metrics,
                                                  self.registry.teacher_if_present(), self.registry.placement)
        return self._stream(key, compute, precision_note=note)

    def _one_step_stream(self, loaded: LoadedTokenizer, image: Image.Image, settings: DecodeSettings,
                         tokens: Sequence[int] | None) -> Iterator[tuple[str, StepTrace]]:
        """A one-step tokenizer's decode (one complete trace). Steps, temperature, seed and precision do not apply:
        they are left out of the cache key and the trace says, per request, that they were ignored."""
        info = loaded.tokenizer.info
        if info.max_steps != 1:
            raise SettingsError(f"{loaded.label}: a {family_name(info)} decodes in up to {info.max_steps} steps, and "
                                "Reconstruct shows the steps of SFTok and of one-step tokenizers only")
        key = _key("rec-one-step", loaded.key, image_digest(image), _token_part(tokens))
        settings_note, precision_note = ignored_settings(info, settings.num_steps, settings.precision)
        task = f"decoding 1 image in one pass ({loaded.label}, {self.registry.device})"

        def compute() -> Iterator[StepTrace]:
            with working_on(task, "choose a smaller tokenizer"):
                yield from iter_one_step_trace(loaded.tokenizer, image, tokens, self.step_metrics,
                                               self.registry.teacher_if_present(), self.registry.placement)
        return self._stream(key, compute, precision_note=precision_note, settings_note=settings_note)

    def generate(self, generator_choice: str, tokenizer_choice: str, class_id: int, settings: DecodeSettings,
                 guidance_scale: float) -> tuple[str, StepTrace]:
        """The complete trace of :meth:`generate_stream`."""
        return deque(self.generate_stream(generator_choice, tokenizer_choice, class_id, settings, guidance_scale),
                     maxlen=1)[0]

    def generate_stream(self, generator_choice: str, tokenizer_choice: str, class_id: int, settings: DecodeSettings,
                        guidance_scale: float) -> Iterator[tuple[str, StepTrace]]:
        """Sample one image step by step (previews decoded one at a time): see :meth:`_stream`."""
        gen = self.registry.get(generator_choice, model_type="generator")
        tok = self.registry.get(tokenizer_choice)
        settings, note = self.runnable(settings)
        key = _key("gen", gen.key, tok.key, int(class_id), settings, float(guidance_scale))
        task = (f"generating 1 image in {settings.num_steps} steps and decoding {settings.num_steps} previews "
                f"({gen.label}, {self.registry.device})")

        def compute() -> Iterator[StepTrace]:
            with working_on(task, "the number of generation steps (each step is one preview image)"):
                yield from iter_generate_trace(gen.model, tok.model, class_id, settings, guidance_scale,
                                               self.registry.placement)
        return self._stream(key, compute, precision_note=note)

    @staticmethod
    def _noted(key: str, trace: StepTrace, **notes: str) -> tuple[str, StepTrace]:
        """The cached trace, carrying this request's notes (why the requested precision or settings were not used;
        the cache holds it without)."""
        given = {name: text for name, text in notes.items() if text}
        return key, (dataclasses.replace(trace, **given) if given else trace)

    def get(self, key: str) -> StepTrace:
        trace = self.cache.get(key) if key else None
        if trace is None:  # no key: nothing decoded yet in this session, or its decode is still streaming
            raise TraceExpired("no finished decode here, or it is no longer cached: wait for the last step, or press "
                               "Reconstruct / Generate again")
        return trace
