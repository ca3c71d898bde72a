"""TiTok's proxy-code stage, trained by this project's loop: the one-step baseline SFTok is compared against.

TiTok (bytedance/1d-tokenizer) trains its first stage exactly as SFTok's warm-up: every one of the teacher's S
grid codes is predicted in one pass from the latent tokens, with cross-entropy against the frozen MaskGIT-VQGAN
teacher's codes. What differs is the model: TiTok's quantiser (nearest unit codeword, trained with its codebook
and commitment terms, no Sinkhorn), a decoder whose S slots all start as one learned mask token, and a patch grid
equal to the proxy grid. ``--stage 1`` with ``model_family=titok`` runs it; the exported folder is a
``core.titok.TiTok`` without a pixel head (rendered through the teacher, as the official stage-1 evaluation does),
so every screen, the A/B comparison and ``python -m analysis eval`` take it as they take a released TiTok.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.maskgit_vqgan import MaskGITVQGAN
from core.titok import TiTok

from .config import LossConfig
from .losses import psnr, weighted_code_ce


class TiTokCodeObjective(nn.Module):
    """Cross-entropy of TiTok's one-pass proxy-code logits against the teacher's codes, plus its quantiser's
    codebook + commitment terms on unit vectors (TiTok's VectorQuantizer with ``use_l2_norm``)."""

    def __init__(self, model: TiTok, loss: LossConfig, commitment_cost: float = 0.25,
                 normaliser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        self.loss_cfg = loss
        self.commitment_cost = commitment_cost
        self.normaliser = normaliser

    def forward(self, images: torch.Tensor, teacher_codes: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        z = model.encoder(images, model.latent_tokens)  # (B, C, 1, N)
        z_q, ids = model.quantize(z)
        unit = F.normalize(z.float().permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=-1)
        chosen = model.quantize.codes()[ids.reshape(-1)]
        quantizer = F.mse_loss(chosen, unit.detach()) + self.commitment_cost * F.mse_loss(unit, chosen.detach())
        logits = model.proxy_logits(z_q)
        every_slot = torch.ones_like(teacher_codes, dtype=torch.bool)
        ce = weighted_code_ce(logits, teacher_codes, every_slot, self.loss_cfg.unmasked_weight,
                              self.loss_cfg.label_smoothing, self.normaliser)
        total = ce + self.loss_cfg.quantizer_weight * quantizer
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == teacher_codes).float().mean()
        return {"loss": total, "ce": ce.detach(), "quantizer": quantizer.detach(), "accuracy_masked": accuracy,
                "indices": ids}


def titok_evaluate(teacher: MaskGITVQGAN) -> Callable:
    """Held-out PSNR and code accuracy of the one-step decode (argmax codes through the teacher)."""
    @torch.no_grad()
    def evaluate(model: TiTok, batch: dict[str, Any], step: int) -> tuple[dict[str, float], torch.Tensor]:
        images = batch["image"]
        z_q, info = model.encode(images)
        codes = model.proxy_logits(z_q).argmax(-1)
        recon = teacher.decode_codes(codes)
        target = teacher.encode(images)
        ids = info["min_encoding_indices"]
        metrics = {"eval/psnr@1": float(psnr(recon, images).mean()),
                   "eval/code_acc@1": float((codes == target).float().mean()),
                   "eval/codebook_used": float(ids.unique().numel()) / model.config.codebook_size}
        return metrics, torch.cat([images, recon], dim=3)
    return evaluate
