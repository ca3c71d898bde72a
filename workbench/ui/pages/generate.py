"""Generate screen: class-conditional sampling with a MaskGIT generator, inspected step by step."""
from __future__ import annotations

import html
from typing import Iterator

import gradio as gr

from workbench.services.decoding import DecodeSettings, SettingsError
from workbench.services.model_registry import DEFAULT_CHOICE
from workbench.services.step_pictures import upscale
from workbench.ui.components.errors import keep_error_visible, user_errors
from workbench.ui.components.model_picker import ModelPicker
from workbench.ui.components.precision_picker import precision_line, precision_radio
from workbench.ui.components.step_scrubber import StepScrubber
from workbench.ui.context import AppContext


class GeneratePage:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                self.generator = ModelPicker(ctx.registry, "Generator checkpoint", model_type="generator",
                                             name="gen-model", info="a saved generator folder in the workspace")
                self.tokenizer = ModelPicker(ctx.registry, "Tokenizer (decodes the generated tokens)", name="gen-tok")
                self.class_id = gr.Number(value=0, precision=0, minimum=0, label="Class id", elem_id="gen-class")
                self.classes = gr.Markdown(self._classes_text(self.generator.dropdown.value), elem_id="gen-classes")
                self.steps = gr.Slider(1, 32, value=8, step=1, label="Generation steps")
                self.guidance = gr.Slider(0, 10, value=4.5, step=0.5, label="Guidance scale",
                                          info="logits = cond + s (cond - uncond), as upstream")
                self.temperature = gr.Slider(0, 3, value=1.0, step=0.05, label="Temperature")
                self.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                self.precision = precision_radio(ctx.service.bf16, "gen")
                self.run = gr.Button("Generate", variant="primary", elem_id="gen-run")
                self.status = gr.Markdown(elem_id="gen-status")
            with gr.Column(scale=1):
                gr.Markdown("**Generated image** · help: `docs/screens.md#generate`")  # a heading, not Gradio's label badge over the image's corner
                self.image = gr.Image(show_label=False, interactive=False, format="png", height=380,
                                      elem_id="gen-image")
        with gr.Accordion("Generation steps", open=True):
            self.scrubber = StepScrubber(ctx.service, "gen", ctx.exports_dir, grid_label="Latent-token grid",
                                         empty_text="Generate a sample to see its steps.")
        event = self.run.click(user_errors(self.on_generate),
                       [self.generator.dropdown, self.tokenizer.dropdown, self.class_id, self.steps, self.guidance,
                        self.temperature, self.seed, self.scrubber.heat_kind, self.precision],
                       [self.image, self.status, *self.scrubber.outputs], api_name="generate", show_progress="minimal")
        # a failed run leaves no earlier picture under a status line that now says the error
        keep_error_visible(event, self.status, [(self.image, None), *self.scrubber.cleared()])
        self.scrubber.wire()
        self.generator.dropdown.change(self._classes_text, [self.generator.dropdown], [self.classes],
                                       api_name="gen_classes", show_progress="hidden")

    def _classes_text(self, generator: str | None) -> str:
        names = self.ctx.registry.class_names(generator or "")
        if not names:
            return ""
        return "Classes: " + ", ".join(f"{i} {html.escape(n)}" for i, n in enumerate(names))

    def on_generate(self, generator: str | None, tokenizer: str, class_id: float | None, steps: float, guidance: float,
                    temperature: float, seed: float | None, heat: str, precision: str = "fp32",
                    progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Outputs after every step's preview is decoded (the scrubber fills in), the complete sample last."""
        settings = DecodeSettings(int(steps), float(temperature), int(seed or 0), precision or "fp32")
        cls = int(class_id or 0)
        names = self.ctx.registry.class_names(generator or "")
        if names and not 0 <= cls < len(names):
            raise SettingsError(f"class: must be one of the {len(names)} named classes, 0..{len(names) - 1}, got {cls}")
        progress(0.1, desc="generating")
        shown = f"class {cls}" + (f" ({html.escape(names[cls])})" if cls < len(names) else "")
        label = "embedded default generator" if generator in (None, "", DEFAULT_CHOICE) else generator
        for key, trace in self.ctx.service.generate_stream(generator, tokenizer, cls, settings, float(guidance)):
            status = (f"**{html.escape(label)}**, {shown}, {settings.num_steps} steps, "
                      f"guidance {float(guidance):g}. Tokens: {' '.join(str(int(t)) for t in trace.tokens)}")
            if not trace.complete:
                status += (f"  \nDecoding previews: {trace.num_steps} of {trace.total_steps} steps shown, the others "
                           "follow.")
                yield (upscale(trace.final), status, *self.scrubber.show_partial(key, trace, heat))
                continue
            status += "".join(f"  \n{line}" for line in [precision_line(trace)] if line)
            yield (upscale(trace.final), status, *self.scrubber.show(key, heat))

    def reload_lists_on(self, triggers: list) -> None:
        self.generator.reload_on(triggers)
        self.tokenizer.reload_on(triggers)


def build(ctx: AppContext) -> GeneratePage:
    return GeneratePage(ctx)
