"""The SFTok tokenizer: ViT encoder -> OptVQ (64 tokens) -> multi-step proxy-code decoder -> pixels.

Official call shapes are kept (``SFTok(config)``, ``encode``, ``decode_tokens``, official state-dict
keys); ``decode_steps`` additionally exposes every decoding step for inspection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import torch
from torch import nn

from .config import resolve_config
from .decoder import MultiStepDecoder
from .encoder import TiTokEncoder
from .inputs import InputError, check_images, check_token_ids
from .kernels import Bf16Copies
from .maskgit_vqgan import MaskGITVQGAN, VectorQuantizer, VQGANDecoder
from .optvq import OptVQ
from .sampling import masked_decode_step
from .weight_decay import no_weight_decay_names


Precision = Literal["fp32", "bf16"]


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: object) -> Precision:
    """fp32 (default): the model as it is. bf16 (opt-in; faster on GPUs and on CPUs with
    AVX512-BF16/AMX, at the cost of some token disagreement with fp32, which ``bench/decode.py``
    reports): the decoder passes and the pixel head run on bf16 copies of their weights, made once
    (:meth:`SFTok.inference_modules`). Decoder LayerNorms, embeddings and the residual stream stay
    fp32; sampling always runs in fp32 and returned logits and images are fp32."""
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
    return precision


def _decoder_matmul_weights(name: str, _: torch.Tensor) -> bool:
    """Which decoder parameters the bf16 copy holds in bf16: the transformer blocks' products (~97%
    of a pass's FLOPs). LayerNorms, embeddings, the condition embedding and the 2-layer head stay
    fp32: bf16 logits (spacing 0.06 at |logit| 8-16) flip near-tied argmaxes; with the head in fp32
    the default model's tokens agree with fp32 99.3% instead of 98.2% (measured on assets/samples)."""
    return name.startswith("transformer.") and ".ln_" not in name


@dataclass
class DecodeStep:
    """What one decoding pass saw and did. Tensors are (B, S) unless stated; S = proxy slots."""

    step: int
    num_steps: int
    mask_ratio_in: float  # fraction of slots masked when this pass ran
    target_mask_ratio: float  # arccos schedule value after this step
    temperature: float  # Gumbel temperature used for sampling at this step
    ids_in: torch.Tensor
    ids_out: torch.Tensor
    newly_committed: torch.Tensor  # bool
    candidates: torch.Tensor
    confidence: torch.Tensor  # probability of each slot's candidate
    entropy: torch.Tensor  # predictive entropy, bits
    logits: torch.Tensor  # (B, S, V)
    preview: torch.Tensor | None = None  # (B, 3, H, W) soft pixel render of this step, if asked


def masked_slots(proxy_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """(B, M) positions of the masked slots of each row, M = the largest count over rows; shorter
    rows are padded with committed positions (computing a few extra slots is harmless)."""
    masked = proxy_ids == mask_id
    count = int(masked.sum(dim=1).max())
    return torch.sort(masked.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :count]


def scatter_slots(values: torch.Tensor, slots: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Place per-slot rows (B, M, V) at ``slots`` (B, M) of a zero (B, num_slots, V) tensor."""
    full = values.new_zeros(values.shape[0], num_slots, values.shape[2])
    return full.scatter_(1, slots.unsqueeze(-1).expand(-1, -1, values.shape[2]), values)


def official_init(module: nn.Module) -> None:
    """The official SFTok initialisation of encoder and decoder (``SFTok._init_weights``).

    Linear/conv weights and embedding tables ~ N(0, 0.02) (truncated at +-2, i.e. not at all), biases 0,
    LayerNorm (1, 0); bare parameters (positional embeddings, latent tokens) keep their own scale.
    PyTorch's defaults differ most in the decoder's code table: N(0, 1) rows of norm ~sqrt(width), ten
    times the positional embedding's. ``weight_init="pytorch"`` keeps those defaults: the embedded
    default's recipe, trained before this init existed and faster with it in a short test (model card).
    """
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SFTok(nn.Module):
    """SFTok, the self-forcing discrete 1D tokenizer (arXiv 2512.16910, https://arxiv.org/abs/2512.16910).

    ``encode`` turns a (B, 3, H, W) image in [0, 1] into ``num_latent_tokens`` quantized tokens;
    ``decode_tokens`` predicts the frozen MaskGIT-VQGAN teacher's proxy codes from them in
    ``num_steps`` masked, MaskGIT-style passes and renders pixels (its own pixel head after stage 3,
    otherwise the attached teacher's decoder); ``decode_steps`` returns every pass for inspection.
    ``config``: an :class:`SFTokConfig` (``create_config("tiny" | "B" | "L")``), our flat dict, or the
    official YAML layout as a dict or OmegaConf config.
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        cfg = resolve_config(config)
        self.config = cfg
        scale = cfg.encoder.width ** -0.5
        self.latent_tokens = nn.Parameter(scale * torch.randn(cfg.num_latent_tokens, cfg.encoder.width))
        self.encoder = TiTokEncoder(cfg)
        self.decoder = MultiStepDecoder(cfg)
        if cfg.weight_init == "official":
            self.encoder.apply(official_init)
            self.decoder.apply(official_init)
        self.quantize = OptVQ(cfg.codebook_size, cfg.token_size, cfg.commitment_cost, cfg.quantizer_mode)
        if cfg.has_pixel_head:
            self.pixel_quantize = VectorQuantizer(cfg.teacher.codebook_size, cfg.teacher.z_channels)
            self.pixel_decoder = VQGANDecoder(cfg.teacher)
        self._teacher: MaskGITVQGAN | None = None
        self._bf16 = Bf16Copies(torch.bfloat16)

    # -- bf16 copies: dropped whenever the weights may have moved or are about to change ------------
    def _apply(self, fn, *args, **kwargs):
        self._bf16.clear()
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        if mode:  # training is about to change the weights; eval() keeps the copies
            self._bf16.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._bf16.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def inference_modules(self, precision: Precision = "fp32") -> tuple[nn.Module, nn.Module | None]:
        """(decoder, pixel decoder) that decoding runs in ``precision``. fp32: the model's own modules.
        bf16: copies with bf16 weights, made on first use and kept until any weight changes (checked
        on every call), or ``to()``/``train()``/``load_state_dict`` runs. The pixel decoder is the
        pixel head, else the attached teacher's decoder, else None."""
        precision = check_precision(precision)
        pixel = self.pixel_decoder if self.has_pixel_head else (
            self._teacher.decoder if self._teacher is not None else None)
        if precision == "fp32":
            return self.decoder, pixel
        decoder = self._bf16.get("decoder", self.decoder, _decoder_matmul_weights)
        if pixel is not None:
            pixel = self._bf16.get("pixel" if self.has_pixel_head else "teacher", pixel, lambda *_: True)
        return decoder, pixel

    def release_bf16_copies(self) -> None:
        """Free the bf16 weight copies (remade on the next bf16 decode)."""
        self._bf16.clear()

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def has_pixel_head(self) -> bool:
        return self.config.has_pixel_head

    def attach_teacher(self, teacher: MaskGITVQGAN | None) -> None:
        """Decode stage-1/2 models (no pixel head) through a frozen teacher; not part of the state dict."""
        object.__setattr__(self, "_teacher", teacher)

    def no_weight_decay_names(self) -> set[str]:
        """Parameters that get no weight decay (official rule: 1-D, norms, biases, embeddings, tokens)."""
        return no_weight_decay_names(self)

    def check_images(self, images: torch.Tensor) -> None:
        check_images(images, self.config.image_size)

    def check_token_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Accept (B, 1, N) or (B, N) integer ids in [0, codebook_size); return (B, N)."""
        return check_token_ids(ids, self.config.num_latent_tokens, self.config.codebook_size)

    # -- official API ------------------------------------------------------------------------------
    def encode_continuous(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent z (B, C, 1, N); any float image dtype is cast to the weights' dtype."""
        return self.encoder(images.to(self.latent_tokens.dtype), self.latent_tokens)

    def encode(self, images: torch.Tensor, per_image: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images (B, 3, H, W) in [0, 1] -> (z_q (B, C, 1, N), info with ``min_encoding_indices`` (B, 1, N)).

        With Sinkhorn assignment the ids of one image depend on the other images in the batch (official
        behaviour); ``per_image=True`` assigns each image's tokens alone, exactly as encoding it by itself.
        """
        self.check_images(images)
        return self.quantize(self.encode_continuous(images), per_image=per_image)

    def _decode_inputs(self, ids: torch.Tensor, num_steps: int | None, temperature: float | None
                       ) -> tuple[torch.Tensor, int, float, torch.Tensor]:
        """Validate decode arguments; return (z_q (B, C, 1, N), num_steps, temperature, all-masked proxy ids)."""
        cfg = self.config
        num_steps = cfg.num_steps if num_steps is None else int(num_steps)
        temperature = cfg.randomize_temperature if temperature is None else float(temperature)
        if not 1 <= num_steps <= 32:
            raise InputError(f"num_steps: must be in 1..32, got {num_steps}")
        if temperature < 0:
            raise InputError(f"temperature: must be >= 0, got {temperature}")
        ids = self.check_token_ids(ids)
        z_q = self.quantize.get_codebook_entry(ids)
        proxy = torch.full((ids.shape[0], cfg.num_proxy_codes), cfg.mask_id, dtype=torch.long, device=ids.device)
        return z_q, num_steps, temperature, proxy

    @torch.no_grad()  # torch applies it around every resumption of a generator
    def iter_decode_steps(self, ids: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                          generator: torch.Generator | None = None, precision: Precision = "fp32"
                          ) -> Iterator[DecodeStep]:
        """Yield each pass's :class:`DecodeStep` (no preview) as soon as it is computed: a viewer can show
        step 1 while the others run. Same random draws and records as :meth:`decode_steps`."""
        cfg = self.config
        check_precision(precision)
        z_q, num_steps, temperature, proxy = self._decode_inputs(ids, num_steps, temperature)
        decoder, _ = self.inference_modules(precision)
        for step in range(num_steps):
            logits = decoder(proxy, z_q).float()
            out = masked_decode_step(logits, proxy, cfg.mask_id, step, num_steps, temperature, generator,
                                     codes_major_noise=True)
            yield DecodeStep(
                step=step, num_steps=num_steps, mask_ratio_in=float((proxy == cfg.mask_id).float().mean()),
                target_mask_ratio=out.target_mask_ratio, temperature=out.temperature, ids_in=proxy, ids_out=out.ids_out,
                newly_committed=out.newly_committed, candidates=out.candidates, confidence=out.confidence,
                entropy=out.entropy, logits=logits)
            proxy = out.ids_out

    @torch.no_grad()
    def decode_steps(self, ids: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                     generator: torch.Generator | None = None, previews: bool | Sequence[int] = False,
                     precision: Precision = "fp32") -> list[DecodeStep]:
        """Run the multi-step decoder on token ids and return one :class:`DecodeStep` per pass.

        Every record holds full (B, S, V) logits and per-slot confidence/entropy, committed slots
        included (the model re-predicts them each pass). ``previews``: True for every step, or a
        list of step indices, to add the soft pixel render (one batched pixel-head pass over the
        chosen steps; consumes no random numbers). Random draws follow the official order, so the
        final ids equal :meth:`decode_ids` and the official decoder under the same seed.
        ``precision="bf16"`` runs the passes and previews on bf16 weights (see :func:`check_precision`).
        """
        records = list(self.iter_decode_steps(ids, num_steps, temperature, generator, precision))
        num_steps = len(records)
        wanted = range(num_steps) if previews is True else ([] if previews is False else list(previews))
        wanted = sorted({s % num_steps for s in wanted})
        if wanted:
            images = self.render_soft(torch.cat([records[s].logits for s in wanted]), precision)
            for i, s in enumerate(images.split(ids.shape[0])):
                records[wanted[i]].preview = s
        return records

    @torch.no_grad()
    def decode_ids(self, ids: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                   generator: torch.Generator | None = None, last_logits: bool = True,
                   precision: Precision = "fp32") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fast multi-step decoding: (final proxy ids (B, S), logits of the last pass (B, S, V) or None).

        Same random draws and the same ids as :meth:`decode_steps`, without the records. A pass only
        reads the logits of still-masked slots (committed slots keep their id whatever the model
        predicts), so the last transformer block and the head run on those slots alone; at the last
        step all slots are computed when ``last_logits`` is True (the soft render needs them).
        ``precision``: see :func:`check_precision`; the logits are fp32 either way.
        """
        cfg = self.config
        check_precision(precision)
        z_q, num_steps, temperature, proxy = self._decode_inputs(ids, num_steps, temperature)
        decoder, _ = self.inference_modules(precision)
        logits = None
        for step in range(num_steps):
            last = step == num_steps - 1
            if last and last_logits:
                logits = decoder(proxy, z_q).float()
                full = logits
            else:
                slots = masked_slots(proxy, cfg.mask_id)
                full = scatter_slots(decoder(proxy, z_q, slots=slots).float(), slots, cfg.num_proxy_codes)
            proxy = masked_decode_step(full, proxy, cfg.mask_id, step, num_steps, temperature, generator,
                                       codes_major_noise=True, stats=False).ids_out
        return proxy, logits

    def _pixel_decoder(self, precision: Precision) -> nn.Module:
        pixel = self.inference_modules(precision)[1]
        if pixel is None:
            raise RuntimeError("this model has no pixel head (stage 1/2): call attach_teacher(teacher) to render pixels")
        return pixel

    @staticmethod
    def _run_pixel_decoder(pixel: nn.Module, z: torch.Tensor, skip_levels: int = 0) -> torch.Tensor:
        """z in the decoder's weight dtype (no-op for fp32); images fp32, clamped to [0, 1]."""
        z = z.to(next(pixel.parameters()).dtype)
        return (pixel(z, skip_levels=skip_levels) if skip_levels else pixel(z)).float().clamp(0.0, 1.0)

    def render_soft(self, logits: torch.Tensor, precision: Precision = "fp32", skip_levels: int = 0) -> torch.Tensor:
        """Soft pixel decode: softmax over codes, mix codewords, run the pixel decoder; clamped to [0, 1].
        The softmax and codeword mix run in fp32; ``precision`` applies to the pixel decoder.
        ``skip_levels`` > 0: a cheaper, smaller picture (see :meth:`VQGANDecoder.forward`)."""
        probs = torch.softmax(logits.float(), dim=-1)
        pixel = self._pixel_decoder(precision)
        quantize = self.pixel_quantize if self.has_pixel_head else self._teacher.quantize
        return self._run_pixel_decoder(pixel, quantize.soft_entry(probs), skip_levels)

    def render_codes(self, proxy_ids: torch.Tensor, precision: Precision = "fp32", skip_levels: int = 0
                     ) -> torch.Tensor:
        """Hard proxy ids (B, S) -> pixels through the pixel head, or the teacher when there is none."""
        pixel = self._pixel_decoder(precision)
        if not self.has_pixel_head and precision == "fp32" and not skip_levels:
            return self._teacher.decode_codes(proxy_ids)
        quantize = self.pixel_quantize if self.has_pixel_head else self._teacher.quantize
        return self._run_pixel_decoder(pixel, quantize.get_codebook_entry(proxy_ids), skip_levels)

    @torch.no_grad()
    def decode_tokens(self, ids: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                      generator: torch.Generator | None = None, precision: Precision = "fp32") -> torch.Tensor:
        """Token ids (B, 1, N) or (B, N) -> images (B, 3, H, W) in [0, 1]: the last step of ``decode_steps``.

        Stage-3 models render the soft last-step distribution (official path); stage-1/2 models
        render the hard final ids through the attached teacher, as the official training eval does.
        Runs :meth:`decode_ids` (no per-step records), so it is the fast path. ``precision``: see
        :func:`check_precision`; the returned images are float32 either way.
        """
        check_precision(precision)
        self._pixel_decoder("fp32")  # a stage-1/2 model without a teacher fails before the passes
        proxy, logits = self.decode_ids(ids, num_steps, temperature, generator, last_logits=self.has_pixel_head,
                                        precision=precision)
        return self.render_soft(logits, precision) if self.has_pixel_head else self.render_codes(proxy, precision)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, num_steps: int | None = None, temperature: float | None = None,
                    generator: torch.Generator | None = None, precision: Precision = "fp32") -> torch.Tensor:
        """Encode (always fp32: token ids decide everything downstream) and decode."""
        check_precision(precision)
        _, info = self.encode(images)
        return self.decode_tokens(info["min_encoding_indices"], num_steps, temperature, generator, precision)
