"""Reconstruct screen: upload or pick an image, decode it step by step, edit its tokens.

Any tokenizer: SFTok streams its masked decoding steps; TiTok, ReVQ and the teacher decode in one pass, shown as
one step (the settings that do not apply to them are ignored, and the status line says so).

Callbacks translate widgets to :mod:`workbench.services.reconstruction` calls and results back to widgets; every
expected failure (bad upload, bad setting, missing model) becomes a ``gr.Error`` with its message.
"""
from __future__ import annotations

import html
from typing import Any, Iterator, Sequence

import gradio as gr

from workbench.services.decoding import DecodeSettings, SettingsError
from workbench.services.model_registry import TOKENIZERS
from workbench.services.step_pictures import upscale
from workbench.services.reconstruction import (ImageChange, Reconstruction, edit_token, nearest_codes,
                                               reconstruct_file, reconstruct_file_stream)
from workbench.ui.components.errors import keep_error_visible, user_errors
from workbench.ui.components.model_picker import ModelPicker
from workbench.ui.components.precision_picker import precision_line, precision_radio
from workbench.ui.components.step_scrubber import StepScrubber
from workbench.ui.context import AppContext
from workbench.ui.state import ReconstructState

TOKENS_PER_ROW = 8
WIDE_TOKENS_PER_ROW = 16  # above 64 ids (the teacher's 256, ReVQ's 256 or 512): fewer, wider rows
ONE_STEP_IGNORES = "a one-step tokenizer (TiTok, ReVQ, the teacher) ignores it, and the status line says so"


def tokens_html(tokens: Sequence[int], encoded: Sequence[int]) -> str:
    """The latent token ids as a grid; edited positions are highlighted and show the original id."""
    if not tokens:
        return "<div class='token-grid-empty'>Decode an image to see its token ids.</div>"
    columns = TOKENS_PER_ROW if len(tokens) <= 64 else WIDE_TOKENS_PER_ROW
    cells = []
    for pos, (tok, orig) in enumerate(zip(tokens, encoded)):
        edited = tok != orig
        title = f"position {pos}" + (f": was {orig}" if edited else "")
        cls = "tok edited" if edited else "tok"
        cells.append(f"<div class='{cls}' title='{html.escape(title)}' data-pos='{pos}' data-token='{tok}'>"
                     f"<span class='pos'>{pos}</span>{tok}</div>")
    return f"<div class='token-grid' style='--cols:{columns}'>{''.join(cells)}</div>"


def change_text(change: ImageChange) -> str:
    """What an edit did to the decoded image, in numbers: "no effect" is said, never left to the eye."""
    if change.identical:
        return ("Against the unedited decode (same settings) the image is identical, every pixel: at these settings "
                "this edit has no effect on the image.")
    return (f"Against the unedited decode (same settings): PSNR {change.psnr_db:.2f} dB, max |Δ| {change.max_abs_delta} "
            f"of 255, {change.changed_pixels} of {change.pixels} pixels changed.")


def _status(rec: Reconstruction, name: str, state: ReconstructState) -> str:
    edits = state.edits()
    lines = [f"**{html.escape(name)}**: {rec.source}."]
    if edits:
        lines.append("Token surgery: " + ", ".join(f"position {e.position}: {e.old} → {e.new}" for e in edits) + ".")
        if rec.edit_change is not None:
            lines.append(change_text(rec.edit_change))
    lines += [f"⚠ {n}" for n in rec.notes]
    if rec.trace.settings_note:
        lines.append(f"ℹ {html.escape(rec.trace.settings_note)}.")
    lines += [line for line in [precision_line(rec.trace)] if line]
    return "  \n".join(lines)


class ReconstructPage:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        samples = list(ctx.samples())
        self.state = gr.State(ReconstructState())
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                gr.Markdown("**Upload an image** (any size; centre-cropped to the model's size) · help: `docs/screens.md#reconstruct`")
                self.upload = gr.File(show_label=False, type="filepath", height=130, elem_id="rec-upload")
                self.sample = gr.Dropdown(choices=samples, value=None, label="…or pick a sample",
                                          elem_id="rec-sample")
                self.model = ModelPicker(ctx.registry, "Tokenizer", TOKENIZERS, name="rec-model",
                                         info="SFTok, TiTok, ReVQ or the teacher: embedded, a folder or release file "
                                              "in the workspace, or a hub id (online)")
                self.steps = gr.Slider(1, 32, value=8, step=1, label="Decoding steps", elem_id="rec-steps",
                                       info=f"SFTok's masked decoding; {ONE_STEP_IGNORES}")
                self.temperature = gr.Slider(0, 3, value=1.0, step=0.05, label="Temperature",
                                             info="SFTok's Gumbel sampling temperature, annealed to 0 at the last "
                                                  "step; one-step tokenizers ignore it (and the seed, and bf16)")
                self.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                self.precision = precision_radio(ctx.service.bf16, "rec")
                self.run = gr.Button("Reconstruct", variant="primary", elem_id="rec-run")
                self.status = gr.Markdown(elem_id="rec-status")
            with gr.Column(scale=2):
                gr.Markdown("**Input (left) vs reconstruction (right)**: drag the divider")
                self.compare = gr.ImageSlider(show_label=False, type="numpy",
                                              format="png", height=420, interactive=False, elem_id="rec-compare")
        with gr.Accordion("Decoding steps", open=True):
            self.scrubber = StepScrubber(ctx.service, "rec", ctx.exports_dir, grid_label="Proxy-code grid")
        with gr.Accordion("Token surgery: replace one token id and decode again (any tokenizer, within its codebook)",
                          open=True):
            self.tokens = gr.HTML(tokens_html((), ()), elem_id="rec-tokens")
            with gr.Row(equal_height=True):
                # no precision / minimum: 2.5 or -1 must reach edit_token, which names the valid range
                self.position = gr.Number(value=0, step=1, label="Position", elem_id="rec-position")
                self.code = gr.Number(value=0, step=1, label="New code", elem_id="rec-code")
                self.neighbours = gr.Markdown(elem_id="rec-neighbours")
                self.apply = gr.Button("Decode with this token", elem_id="rec-apply")
                self.reset = gr.Button("Reset tokens", elem_id="rec-reset")
        self._wire()

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def _outputs(self) -> list:
        return [self.state, self.compare, self.status, self.tokens, *self.scrubber.outputs]

    def _settings_inputs(self) -> list:
        return [self.model.dropdown, self.steps, self.temperature, self.seed, self.scrubber.heat_kind, self.precision]

    def _decode(self, source: str, name: str, model: str, steps: float, temperature: float, seed: float | None,
                heat: str, precision: str, tokens: Sequence[int] | None, progress: gr.Progress) -> Iterator[tuple]:
        """Outputs after every decoded step (the scrubber fills in), the complete decode last."""
        if not source:
            raise SettingsError("no image yet: upload one or pick a sample")
        settings = DecodeSettings(int(steps), float(temperature), int(seed or 0), precision or "fp32")
        progress(0.1, desc="loading model and decoding")
        for rec in reconstruct_file_stream(self.ctx.service, model, source, settings, tokens, name):
            new_state = ReconstructState(source_path=str(source), source_name=name, model_choice=model,
                                         encoded=rec.encoded, tokens=tuple(int(t) for t in rec.trace.tokens),
                                         trace_key=rec.trace_key)
            pair = (upscale(rec.input_image), upscale(rec.trace.final))
            tokens_view = tokens_html(new_state.tokens, new_state.encoded)
            if not rec.trace.complete:  # the newest step's preview stands in for the reconstruction until the last
                status = (f"**{html.escape(name)}**: {rec.source}.  \nDecoding: {rec.trace.num_steps} of "
                          f"{rec.trace.total_steps} steps shown, the others follow as they are decoded.")
                yield (new_state, pair, status, tokens_view,
                       *self.scrubber.show_partial(rec.trace_key, rec.trace, heat))
                continue
            for note in rec.notes:
                gr.Warning(f"{name}: {note}")
            yield (new_state, pair, _status(rec, name, new_state), tokens_view,
                   *self.scrubber.show(rec.trace_key, heat))

    # -- events -------------------------------------------------------------------------------------
    def on_upload(self, path: str | None, model: str, steps: float, temperature: float, seed: float | None, heat: str,
                  precision: str, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Decode an uploaded file; the sample picker empties, so it names no picture that is not shown."""
        if not path:
            raise SettingsError("the upload did not arrive; try again")
        name = path.rsplit("/", 1)[-1]
        for out in self._decode(path, name, model, steps, temperature, seed, heat, precision, None, progress):
            yield *out, None

    def on_sample(self, sample: str | None, model: str, steps: float, temperature: float, seed: float | None, heat: str,
                  precision: str, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Decode a bundled sample; the upload box empties, as the sample replaces the upload."""
        samples = self.ctx.samples()
        if sample not in samples:
            raise SettingsError(f"sample: unknown sample {sample!r}; choose one of {sorted(samples)}")
        for out in self._decode(str(samples[sample]), sample, model, steps, temperature, seed, heat, precision, None,
                                progress):
            yield *out, None

    def on_run(self, model: str, steps: float, temperature: float, seed: float | None, heat: str, precision: str,
               state: ReconstructState, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Decode again with the current settings; token edits survive unless the model changed."""
        tokens = state.tokens if state.edits() and model == state.model_choice else None
        yield from self._decode(state.source_path, state.source_name, model, steps, temperature, seed, heat, precision,
                                tokens, progress)

    def on_apply(self, position: float | None, code: float | None, model: str, steps: float, temperature: float,
                 seed: float | None, heat: str, precision: str, state: ReconstructState,
                 progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Edit one token of what the chosen model encodes (re-encoded first when the model changed)."""
        if not state.tokens:
            raise SettingsError("no tokens yet: decode an image first")
        base = state.tokens
        if model != state.model_choice:
            base = reconstruct_file(self.ctx.service, model, state.source_path,
                                    DecodeSettings(int(steps), float(temperature), int(seed or 0))).encoded
        codebook = self.ctx.registry.tokenizer(model).tokenizer.info.codebook_size
        tokens = edit_token(base, position, code, codebook)
        yield from self._decode(state.source_path, state.source_name, model, steps, temperature, seed, heat, precision,
                                tokens, progress)

    def on_reset(self, model: str, steps: float, temperature: float, seed: float | None, heat: str, precision: str,
                 state: ReconstructState, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        yield from self._decode(state.source_path, state.source_name, model, steps, temperature, seed, heat, precision,
                                None, progress)

    def on_position(self, position: float | None, state: ReconstructState) -> str:
        """Which code sits at ``position`` and its nearest codewords: candidates for a gentle edit."""
        if not state.tokens or position is None:
            return ""
        if float(position) != int(position) or not 0 <= int(position) < len(state.tokens):
            return f"Position must be a whole number in 0..{len(state.tokens) - 1}, got {position:g}."
        current = state.tokens[int(position)]
        tokenizer = self.ctx.registry.tokenizer(state.model_choice).tokenizer
        near = ", ".join(f"{c} ({s:.2f})" for c, s in nearest_codes(tokenizer, current, 5, int(position)))
        own = " in this position's own codebook" if tokenizer.codebook().dim() == 3 else ""
        return f"Position {int(position)} holds code **{current}**. Nearest codewords{own} (cosine): {near}."

    def _wire(self) -> None:
        opts: dict[str, Any] = {"show_progress": "minimal"}
        settings = self._settings_inputs()
        events = {
            "upload": self.upload.upload(user_errors(self.on_upload), [self.upload, *settings],
                                         [*self._outputs, self.sample], api_name="reconstruct_upload", **opts),
            "sample": self.sample.input(user_errors(self.on_sample), [self.sample, *settings],
                                        [*self._outputs, self.upload], api_name="reconstruct_sample", **opts),
            "run": self.run.click(user_errors(self.on_run), [*settings, self.state], self._outputs,
                                  api_name="reconstruct", **opts),
            "apply": self.apply.click(user_errors(self.on_apply), [self.position, self.code, *settings, self.state],
                                      self._outputs, api_name="token_surgery", **opts),
            "reset": self.reset.click(user_errors(self.on_reset), [*settings, self.state], self._outputs,
                                      api_name="reset_tokens", **opts),
        }
        also_out = {"upload": [self.sample], "sample": [self.upload]}  # an upload empties the other picker
        for kind, event in events.items():
            # a refused upload must not look loaded; the message stays in the status line; every other output of
            # the failed event keeps its content without an "Error" badge
            keep_error_visible(event, self.status, [(self.upload, None)] if kind == "upload" else [],
                               untouched=[c for c in [*self._outputs, *also_out.get(kind, [])]
                                          if c is not self.status and not (kind == "upload" and c is self.upload)])
            event.success(user_errors(self.on_position), [self.position, self.state], [self.neighbours],
                          show_progress="hidden", api_visibility="private")  # the neighbours of the new tokens
        self.position.change(user_errors(self.on_position), [self.position, self.state], [self.neighbours],
                             api_name="token_neighbours", show_progress="hidden")
        self.scrubber.wire()


    def reload_lists_on(self, triggers: list) -> None:
        self.model.reload_on(triggers)


def build(ctx: AppContext) -> ReconstructPage:
    return ReconstructPage(ctx)


__all__ = ["ReconstructPage", "build", "tokens_html"]
