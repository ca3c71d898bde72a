"""A/B screen: two tokenizers (any family, or two SFTok checkpoints) on one image, one step slider for both.

Every frame of both decodes goes to the browser once (PNG data URIs in the view's ``data-ab``); the slider
repaints both panels there, without a server call. A one-step tokenizer's frame is held at every step.
Beside the per-step PSNR of both, each side's token budget (tokens x bits).
"""
from __future__ import annotations

import copy
import html
import json
import math
from typing import Any

import gradio as gr

from workbench.io.tokenizer_sources import FAMILY_NAMES
from workbench.services.compare import Comparison, CompareService, Side
from workbench.services.decoding import DecodeSettings, SettingsError
from workbench.services.model_registry import COMPARISON_CHOICE, TEACHER_CHOICE, TITOK_CHOICE, TOKENIZERS, ModelRegistry
from workbench.services.step_frames import png_data_uri
from workbench.ui.components.errors import keep_error_visible, user_errors
from workbench.ui.components.model_picker import ModelPicker
from workbench.ui.components.plots import BASE_LAYOUT, COLORS, as_plot
from workbench.ui.context import AppContext

EMPTY_HTML = "<div class='scrub-empty'>Upload an image or pick a sample to decode it with both tokenizers.</div>"

# Browser half: the slider (or a value set by a test) repaints both sides from the frames the HTML carries.
ON_LOAD = """
const rootOf = () => element.querySelector('.ab[data-ab]');
const show = (root, step) => {
  const data = root._data || (root._data = JSON.parse(root.dataset.ab));
  step = Math.min(Math.max(1, Math.round(step)), data.steps);
  root.dataset.step = String(step);
  for (const side of ['a', 'b']) {
    const s = data[side];
    root.querySelector('.ab-img-' + side).src = s.frames[s.index[step - 1]];
    root.querySelector('.ab-caption-' + side).innerHTML = s.captions[step - 1];
  }
  root.querySelector('.ab-now').textContent = String(step);
};
element.addEventListener('input', (ev) => {
  const root = rootOf();
  if (root && ev.target.classList.contains('ab-range')) show(root, Number(ev.target.value));
});
"""


def default_b(registry: ModelRegistry) -> str:
    """Tokenizer B to start with: the embedded TiTok (the one-step tokenizer SFTok improves on), else the embedded
    comparison (SFVR against vanilla), else the teacher, else the first other tokenizer listed, else the default."""
    values = [value for _, value in registry.choices(TOKENIZERS)]
    for wanted in (TITOK_CHOICE, COMPARISON_CHOICE, TEACHER_CHOICE):
        if wanted in values:
            return wanted
    return values[1] if len(values) > 1 else (values[0] if values else "")


def format_psnr(value: float) -> str:
    return "∞ dB (identical to the input)" if math.isinf(value) else f"{value:.2f} dB"


def step_caption(side: Side, step: int) -> str:
    """What a side shows at 0-based ``step``: its PSNR, and whether the frame is held from its last step."""
    text = f"PSNR {format_psnr(float(side.psnr[step]))}"
    if side.held_at(step):
        text += (" · held: decodes in one step" if side.own_steps == 1
                 else f" · held from its step {side.own_steps}")
    return html.escape(text)


def _side_json(side: Side, steps: int) -> dict[str, Any]:
    return {"frames": [png_data_uri(f) for f in side.frames], "index": side.index,
            "captions": [step_caption(side, s) for s in range(steps)], "own_steps": side.own_steps}


def view_html(result: Comparison) -> str:
    """Input and both decodes at the last step, one slider; every frame rides along in ``data-ab``."""
    last = result.steps - 1
    data = {"steps": result.steps, "a": _side_json(result.a, result.steps), "b": _side_json(result.b, result.steps)}
    payload = html.escape(json.dumps(data, separators=(",", ":")), quote=True)

    def panel(side: Side, tag: str) -> str:
        caption = f"{html.escape(side.label)} · {side.own_steps} step{'s' if side.own_steps > 1 else ''}"
        return (f"<figure class='scrub-panel' id='ab-{tag}'><figcaption>{caption}</figcaption>"
                f"<img class='ab-img-{tag}' src='{data[tag]['frames'][side.index[last]]}' alt='{html.escape(side.label)}'>"
                f"<div class='scrub-info ab-caption-{tag}'>{data[tag]['captions'][last]}</div></figure>")

    return (f"<div class='ab' data-ab=\"{payload}\" data-step='{last + 1}'>"
            f"<div class='scrub-bar'><label id='ab-step'>Step <b class='ab-now'>{last + 1}</b> / {result.steps} "
            f"<input class='scrub-range ab-range' type='range' min='1' max='{result.steps}' step='1' value='{last + 1}'>"
            f"</label></div><div class='scrub-panels'>"
            f"<figure class='scrub-panel' id='ab-input'><figcaption>Input (as A sees it)</figcaption>"
            f"<img src='{png_data_uri(result.a.input_image)}' alt='input'></figure>"
            + panel(result.a, "a") + panel(result.b, "b") + "</div></div>")


def psnr_figure(result: Comparison) -> dict[str, Any]:
    """Per-step PSNR of both sides on one axis; a held side is dashed, an infinite PSNR is left out (said in text)."""
    steps = list(range(1, result.steps + 1))
    data = []
    for i, side in enumerate(result.sides):
        held = side.own_steps < result.steps
        data.append({"type": "scatter", "mode": "lines+markers", "x": steps,
                     "name": side.label + (" (one step, held)" if side.own_steps == 1 and held else ""),
                     "y": [None if math.isinf(v) else round(float(v), 4) for v in side.psnr],
                     "line": {"color": COLORS[i], "width": 2, "dash": "dash" if held else "solid"}, "marker": {"size": 6}})
    layout = copy.deepcopy(BASE_LAYOUT)
    layout.update(title={"text": "Per-step PSNR against the input (luma)", "x": 0, "xanchor": "left", "y": 0.97,
                         "yanchor": "top", "font": {"size": 14}},
                  margin={**layout["margin"], "t": 80},
                  xaxis={"title": {"text": "step"}, "dtick": 1 if result.steps <= 16 else 4,
                         "range": [0.5, result.steps + 0.5]},
                  yaxis={"title": {"text": "PSNR (dB)"}})
    return {"data": data, "layout": layout}


def budget_markdown(result: Comparison) -> str:
    """Each side's token budget beside its decode: tokens x bits per token, steps decoded, last-step PSNR."""
    lines = ["**Token budget** (tokens × log2(codebook size) bits)", ""]
    for tag, side in zip("AB", result.sides):
        steps = f"{side.own_steps} step{'s' if side.own_steps > 1 else ''}"
        steps += ", held after" if side.own_steps < result.steps else ""
        label = html.escape(side.label.split(": ", 1)[-1])
        lines.append(f"- **{tag}** {label} ({FAMILY_NAMES.get(side.info.family, side.info.family)}): "
                     f"**{side.budget.describe()}** · {steps} · last step {format_psnr(float(side.psnr[-1]))}")
    a, b = result.a.budget.bits, result.b.budget.bits
    lines += ["", f"A stores an image in {a / b:.2f}× the bits of B." if a != b else "A and B store an image in the same bits."]
    return "\n".join(lines)


def status_text(result: Comparison) -> str:
    lines = [f"**{html.escape(s.label)}**: {html.escape(s.source)}." for s in result.sides]
    sizes = {s.info.image_size for s in result.sides}
    if len(sizes) > 1:
        lines.append("The tokenizers work at different sizes: each PSNR is against that side's own crop.")
    lines += [f"⚠ {html.escape(n)}" for n in dict.fromkeys(result.a.notes + result.b.notes)]
    return "  \n".join(lines)


class ComparePage:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.service = CompareService(ctx.registry)
        self.source = gr.State(("", ""))  # (path, name) of the image shown
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                gr.Markdown("**Two tokenizers, one image, one step slider** · help: `docs/screens.md#ab`")
                self.upload = gr.File(show_label=False, type="filepath", height=130, elem_id="ab-upload")
                self.sample = gr.Dropdown(choices=list(ctx.samples()), value=None, label="…or pick a sample",
                                          elem_id="ab-sample")
                where = "SFTok, TiTok, ReVQ or the teacher: embedded, a folder or release file in the workspace"
                self.model_a = ModelPicker(ctx.registry, "Tokenizer A", TOKENIZERS, name="ab-a", info=where)
                self.model_b = ModelPicker(ctx.registry, "Tokenizer B", TOKENIZERS, name="ab-b", info=where)
                self.model_b.dropdown.value = default_b(ctx.registry)  # A starts at the default, B at its rival
                self.steps = gr.Slider(1, 32, value=8, step=1, label="Decoding steps (both)", elem_id="ab-steps",
                                       info="a one-step tokenizer decodes once and its frame is held")
                self.temperature = gr.Slider(0, 3, value=1.0, step=0.05, label="Temperature",
                                             info="multi-step SFTok sampling; same seed on both sides")
                self.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                self.run = gr.Button("Compare", variant="primary", elem_id="ab-run")
                self.status = gr.Markdown(elem_id="ab-status")
            with gr.Column(scale=2):
                self.view = gr.HTML(EMPTY_HTML, elem_id="ab-scrubber", js_on_load=ON_LOAD)
        with gr.Row():
            self.curve = gr.Plot(show_label=False, scale=3, elem_id="ab-curve")
            with gr.Column(scale=2):
                self.budget = gr.Markdown(elem_id="ab-budget")
        self._wire()

    @property
    def _outputs(self) -> list:
        return [self.source, self.view, self.curve, self.budget, self.status]

    def _settings(self) -> list:
        return [self.model_a.dropdown, self.model_b.dropdown, self.steps, self.temperature, self.seed]

    def _compare(self, path: str, name: str, a: str, b: str, steps: float, temperature: float,
                 seed: float | None) -> tuple:
        if not path:
            raise SettingsError("no image yet: upload one or pick a sample")
        settings = DecodeSettings(int(steps), float(temperature), int(seed or 0))
        result = self.service.compare(a, b, path, settings, name)
        return ((path, name), view_html(result), as_plot(psnr_figure(result)), budget_markdown(result),
                status_text(result))

    def on_upload(self, path: str | None, a: str, b: str, steps: float, temperature: float,
                  seed: float | None) -> tuple:
        """Compare on an uploaded file; the sample picker empties, so it names no picture that is not shown."""
        if not path:
            raise SettingsError("the upload did not arrive; try again")
        return *self._compare(path, path.rsplit("/", 1)[-1], a, b, steps, temperature, seed), None

    def on_sample(self, sample: str | None, a: str, b: str, steps: float, temperature: float,
                  seed: float | None) -> tuple:
        """Compare on a bundled sample; the upload box empties."""
        samples = self.ctx.samples()
        if sample not in samples:
            raise SettingsError(f"sample: unknown sample {sample!r}; choose one of {sorted(samples)}")
        return *self._compare(str(samples[sample]), sample, a, b, steps, temperature, seed), None

    def on_run(self, a: str, b: str, steps: float, temperature: float, seed: float | None,
               source: tuple[str, str]) -> tuple:
        """Compare again on the image shown, with the current tokenizers and settings."""
        path, name = source or ("", "")
        return self._compare(path, name, a, b, steps, temperature, seed)

    def _wire(self) -> None:
        opts: dict[str, Any] = {"show_progress": "minimal"}
        settings = self._settings()
        events = {
            "upload": self.upload.upload(user_errors(self.on_upload), [self.upload, *settings],
                                         [*self._outputs, self.sample], api_name="ab_upload", **opts),
            "sample": self.sample.input(user_errors(self.on_sample), [self.sample, *settings],
                                        [*self._outputs, self.upload], api_name="ab_sample", **opts),
            "run": self.run.click(user_errors(self.on_run), [*settings, self.source], self._outputs,
                                  api_name="ab_compare", **opts),
        }
        for kind, event in events.items():
            keep_error_visible(event, self.status, [(self.upload, None)] if kind == "upload" else [],
                               untouched=[c for c in self._outputs if c is not self.status])

    def reload_lists_on(self, triggers: list) -> None:
        self.model_a.reload_on(triggers)
        self.model_b.reload_on(triggers)


def build(ctx: AppContext) -> ComparePage:
    return ComparePage(ctx)


__all__ = ["ComparePage", "budget_markdown", "build", "default_b", "psnr_figure", "view_html"]
