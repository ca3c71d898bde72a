"""Training objectives as modules, so the distributed wrapper sees a plain ``forward``.

Random draws (masks, SFVR replacement) are made by the trainer and passed in, so a forward is a
deterministic function of its inputs and resumed runs replay exactly.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.maskgit_vqgan import MaskGITVQGAN
from core.generator import MaskGITGenerator
from core.sampling import masked_decode_step
from core.sftok import SFTok

from .config import LossConfig, SFVRConfig
from .losses import weighted_code_ce
from .masking import decoder_inputs


def first_pass_predictions(tokenizer: SFTok, z_q: torch.Tensor) -> torch.Tensor:
    """Argmax of one all-masked decoder pass: the model's step-1 prediction M_1 (B, S)."""
    cfg = tokenizer.config
    masked = torch.full((z_q.shape[0], cfg.num_proxy_codes), cfg.mask_id, dtype=torch.long, device=z_q.device)
    return tokenizer.decoder(masked, z_q).argmax(-1)


def prev_step_predictions(tokenizer: SFTok, z_q: torch.Tensor, num_steps: int, generator: torch.Generator | None) -> torch.Tensor:
    """The model's prediction at pass n-1 of an n-step decode (committed ids + that pass's candidates)."""
    cfg = tokenizer.config
    ids = torch.full((z_q.shape[0], cfg.num_proxy_codes), cfg.mask_id, dtype=torch.long, device=z_q.device)
    candidates = ids
    for step in range(max(1, num_steps - 1)):
        out = masked_decode_step(tokenizer.decoder(ids, z_q), ids, cfg.mask_id, step, num_steps, cfg.randomize_temperature, generator)
        ids, candidates = out.ids_out, out.candidates
    return candidates


class ProxyCodeObjective(nn.Module):
    """Stages 1-2: cross-entropy of the decoder's proxy-code logits against the teacher's codes.

    Stage 1 passes all-True masks and no replacement. Stage 2 (SFVR) fills context slots with the
    model's own no-grad prediction where ``use_own`` is True. ``reuse_encoding`` takes that
    prediction from the graded pass's (detached) quantised latent instead of encoding the images a
    second time as the official loop does; the values are identical, the cost is one encoder pass less.
    """

    def __init__(self, tokenizer: SFTok, loss: LossConfig, sfvr: SFVRConfig | None = None, reuse_encoding: bool = True,
                 normaliser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.normaliser = normaliser  # denominator of the weighted CE (see weighted_code_ce)
        self.loss_cfg = loss
        self.sfvr = sfvr
        self.reuse_encoding = reuse_encoding
        self.last_own_predictions: torch.Tensor | None = None  # for inspection in tests

    def own_predictions(self, images: torch.Tensor, z_q: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        tok = self.tokenizer
        with torch.no_grad():
            if self.reuse_encoding:
                z_first = z_q.detach()
            else:
                z_first = tok.quantize(tok.encode_continuous(images))[0]
            if self.sfvr is not None and self.sfvr.context_source == "prev":
                return prev_step_predictions(tok, z_first, self.sfvr.context_steps, generator)
            return first_pass_predictions(tok, z_first)

    def forward(self, images: torch.Tensor, teacher_codes: torch.Tensor, masks: torch.Tensor,
                use_own: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        mask_id = tok.config.mask_id
        z_q, qinfo = tok.quantize(tok.encode_continuous(images))
        context = teacher_codes
        if use_own is not None:
            own = self.own_predictions(images, z_q, generator)
            self.last_own_predictions = own
            context = torch.where(use_own, own, teacher_codes)
        inputs = decoder_inputs(context, masks, mask_id)
        logits = tok.decoder(inputs, z_q)
        ce = weighted_code_ce(logits, teacher_codes, masks, self.loss_cfg.unmasked_weight, self.loss_cfg.label_smoothing,
                              self.normaliser)
        total = ce + self.loss_cfg.quantizer_weight * qinfo["quantizer_loss"]
        with torch.no_grad():
            hit = (logits.argmax(-1) == teacher_codes).float()
            acc_masked = (hit * masks).sum() / masks.sum().clamp(min=1)
        return {"loss": total, "ce": ce.detach(), "quantizer": qinfo["quantizer_loss"].detach(),
                "accuracy_masked": acc_masked, "indices": qinfo["min_encoding_indices"], "inputs": inputs}


class PixelObjective(nn.Module):
    """Stage 3: decode to pixels through the soft pixel head; L2 (+ LPIPS) against the image.

    Encoder, latent tokens and quantiser are frozen (no gradient, eval mode). Context slots hold the
    model's own all-masked first-pass prediction, as the official stage 3 does, except where ``use_own``
    is False: there they hold the teacher's code (stage 2's replacement rule, so a decoder taught to read
    revealed codes keeps doing so; not in the paper). With ``code_ce_weight``
    > 0 (not in the paper) the masked slots' cross-entropy against ``teacher_codes`` is added, so the
    logits stay a model of the teacher's codes while the render learns pixels.
    """

    def __init__(self, tokenizer: SFTok, l2_weight: float, lpips_weight: float, lpips: nn.Module | None,
                 code_ce_weight: float = 0.0, normaliser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.normaliser = normaliser  # denominator of the code CE (see weighted_code_ce)
        self.l2_weight = l2_weight
        self.lpips_weight = lpips_weight if lpips is not None else 0.0
        self.lpips = lpips
        self.code_ce_weight = code_ce_weight

    def forward(self, images: torch.Tensor, masks: torch.Tensor, teacher_codes: torch.Tensor | None = None,
                use_own: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        with torch.no_grad():
            z_q = tok.quantize(tok.encode_continuous(images))[0]
            guided = first_pass_predictions(tok, z_q)
        if use_own is not None:
            if teacher_codes is None:
                raise ValueError("use_own needs the teacher's codes for the slots it does not fill")
            guided = torch.where(use_own, guided, teacher_codes)
        inputs = decoder_inputs(guided, masks, tok.config.mask_id)
        logits = tok.decoder(inputs, z_q)
        recon = tok.pixel_decoder(tok.pixel_quantize.soft_entry(torch.softmax(logits.float(), dim=-1)))
        l2 = F.mse_loss(recon, images)
        total = self.l2_weight * l2
        out = {"l2": l2.detach()}
        if self.lpips is not None and self.lpips_weight > 0:
            perceptual = self.lpips(recon * 2 - 1, images * 2 - 1).mean()
            total = total + self.lpips_weight * perceptual
            out["lpips"] = perceptual.detach()
        if self.code_ce_weight > 0:
            if teacher_codes is None:
                raise ValueError("code_ce_weight > 0 needs the teacher's codes")
            code_ce = weighted_code_ce(logits, teacher_codes, masks, 0.0, 0.0, self.normaliser)
            total = total + self.code_ce_weight * code_ce
            out["code_ce"] = code_ce.detach()
        out.update(loss=total, recon=recon)
        return out


class TeacherObjective(nn.Module):
    """MaskGIT-VQGAN training: L2 reconstruction + codebook/commitment loss (+ LPIPS when available)."""

    def __init__(self, teacher: MaskGITVQGAN, perceptual_weight: float = 0.0, lpips: nn.Module | None = None) -> None:
        super().__init__()
        self.teacher = teacher
        self.perceptual_weight = perceptual_weight if lpips is not None else 0.0
        self.lpips = lpips

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.teacher.encoder(images)
        z_q, ids, qloss = self.teacher.quantize(z)
        recon = self.teacher.decoder(z_q)
        l2 = F.mse_loss(recon, images)
        total = l2 + qloss
        out = {"l2": l2.detach(), "quantizer": qloss.detach()}
        if self.lpips is not None and self.perceptual_weight > 0:
            perceptual = self.lpips(recon * 2 - 1, images * 2 - 1).mean()
            total = total + self.perceptual_weight * perceptual
            out["lpips"] = perceptual.detach()
        out.update(loss=total, ids=ids, z=z.detach())
        return out


class GeneratorObjective(nn.Module):
    """Class-conditional MaskGIT over tokenizer ids: weighted, label-smoothed CE on masked slots."""

    def __init__(self, generator: MaskGITGenerator, label_smoothing: float, unmasked_weight: float,
                 normaliser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.normaliser = normaliser  # denominator of the weighted CE (see weighted_code_ce)
        self.label_smoothing = label_smoothing
        self.unmasked_weight = unmasked_weight

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, masks: torch.Tensor, drop_class: torch.Tensor) -> dict[str, torch.Tensor]:
        mask_id = self.generator.config.mask_id
        inputs = decoder_inputs(tokens, masks, mask_id)
        logits = self.generator(inputs, class_ids, drop_class)
        loss = weighted_code_ce(logits, tokens, masks, self.unmasked_weight, self.label_smoothing, self.normaliser)
        with torch.no_grad():
            hit = (logits.argmax(-1) == tokens).float()
            acc = (hit * masks).sum() / masks.sum().clamp(min=1)
        return {"loss": loss, "accuracy_masked": acc}
