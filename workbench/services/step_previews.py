"""One step's preview image, rendered the moment its decoding pass is done, at a cost a stream can afford.

A soft render through SFTok-B/L's 256-px pixel head costs about a second on 2 CPU cores, and most of it
is the full-resolution level (128 channels at 256 x 256). On models larger than
``FULL_PREVIEW_MAX_SIDE`` the intermediate steps therefore stop one level early (``skip_levels=1``:
a 128-px picture, about half the cost, see ``bench/stream.py`` for the time and the PSNR against the full render),
upscaled bilinearly to the model's size; the last step, which is the reconstruction, is always rendered in
full. Small models (the embedded default) render every step in full, as before.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core import SFTok

FULL_PREVIEW_MAX_SIDE = 128  # models up to this image size render every step's preview at full resolution


def preview_skip_levels(model: SFTok) -> int:
    """How many top pixel-decoder levels the intermediate previews of ``model`` skip: 1 on large models
    whose decoder allows it (B/L), else 0."""
    if model.config.image_size <= FULL_PREVIEW_MAX_SIDE:
        return 0
    pixel = model.inference_modules("fp32")[1]
    check = getattr(pixel, "check_skip_levels", None)
    if check is None:
        return 0
    try:
        check(1)
    except ValueError:
        return 0
    return 1


def preview_label(model: SFTok, skip_levels: int, num_steps: int) -> str:
    """How the previews were rendered, for the scrubber's caption."""
    route = ("soft preview: softmax over codes mixed into codewords, pixel head" if model.has_pixel_head
             else "soft preview through the frozen teacher (final image: hard codes)")
    if not skip_levels or num_steps == 1:
        return route
    side = model.config.image_size
    return (f"{route}; steps 1-{num_steps - 1} rendered at {side >> skip_levels} px (the pixel decoder's last "
            f"level skipped, so each step shows as soon as it is decoded) and upscaled to {side} px; "
            f"step {num_steps} at full resolution")


def render_step_preview(model: SFTok, logits: torch.Tensor, precision: str, skip_levels: int) -> torch.Tensor:
    """Soft render of one pass's logits (B, S, V) -> (B, 3, H, W) in [0, 1] at the model's image size."""
    return _at_model_size(model, model.render_soft(logits, precision, skip_levels=skip_levels))


def render_ids_preview(model: SFTok, candidates: torch.Tensor, precision: str, skip_levels: int) -> torch.Tensor:
    """Token ids (B, N) decoded (tokenizer's default steps, temperature 0) and rendered as :func:`render_step_preview`
    does: soft last-pass render on a pixel head, hard codes through the teacher otherwise."""
    if not skip_levels:  # the full render: the tokenizer's own decode
        return model.decode_tokens(candidates, temperature=0.0, precision=precision)
    proxy, logits = model.decode_ids(candidates, temperature=0.0, last_logits=model.has_pixel_head,
                                     precision=precision)
    if model.has_pixel_head:
        return render_step_preview(model, logits, precision, skip_levels)
    return _at_model_size(model, model.render_codes(proxy, precision, skip_levels=skip_levels))


def _at_model_size(model: SFTok, images: torch.Tensor) -> torch.Tensor:
    """A smaller render upscaled (bilinear) to the model's image size; a full-size one as it is."""
    side = model.config.image_size
    if images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
