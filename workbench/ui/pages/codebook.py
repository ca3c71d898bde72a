"""Codebook screen: how any tokenizer (SFTok, TiTok, ReVQ, the MaskGIT-VQGAN teacher) uses its codebook on a
workspace dataset, and, beside one that predicts the teacher's codes (SFTok, TiTok), how the teacher uses its own.

Run counts every code over up to N images (progress per batch); the summary, usage and per-position
figures come first, the UMAP map follows (its first fit in a process compiles numba, ~20 s; it is then
cached on disk by the codebook's hash). A code's examples are picked by id, from the most-used table,
or by clicking a point on the map, and re-read from the dataset: a grid code with its cell outlined, a latent
token whole (a 1-D token has no cell in the image: each one is computed from all of it). ReVQ has one codebook
per token position: its codes are (position, id) pairs numbered position x K + id, and its map shows position 0's.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterator

import gradio as gr
import pandas as pd

from workbench.services.analyses import (MAP_POSITION, MAX_USAGE_IMAGES, AnalysisService, CodebookBook, CodebookReport,
                                         code_examples)
from workbench.services.model_registry import TOKENIZERS
from workbench.ui.components.analysis_plots import codebook_map, empty_plot, position_heatmap, usage_plot
from workbench.ui.components.analysis_stream import cancel_button, stream_analysis, wire_cancel
from workbench.ui.components.dataset_picker import DatasetPicker
from workbench.ui.components.errors import keep_error_visible, user_errors
from workbench.ui.components.model_picker import ModelPicker
from workbench.ui.components.tables import Measure, measures_frame
from workbench.ui.context import AppContext

BOOKS = [("The tokenizer's codebook", "tokens"), ("The teacher's codebook (the proxy codes it predicts)", "teacher")]
SUMMARY_MEASURES = (
    Measure("used", "used", "codes"), Measure("size", "size", "codes"),
    Measure("utilisation", "utilisation", "share of codes"), Measure("dead", "dead (never used)", "codes"),
    Measure("entropy_bits", "entropy", "bits", 3), Measure("perplexity", "perplexity (2^entropy)", "codes", 1),
    Measure("normalized_entropy", "normalised entropy", "entropy / log2(size)", 3),
    Measure("images", "images", "images"), Measure("tokens", "tokens counted", "tokens"),
)
TOP_COLUMNS = ["code", "count", "share"]
PER_POSITION_COLUMNS = ["code", "token", "id", "count", "share"]  # a ReVQ code is (token position, id in its book)
TOP_ROWS = 20
EXAMPLES = 12

# Clicking a point of the map types its code into the code box and presses "Show examples".
CLICK_JS = """
() => {
  const attach = (tries) => {
    const gd = document.querySelector('#cb-umap .js-plotly-plot');
    if (!gd || !gd.on) { if (tries > 0) setTimeout(() => attach(tries - 1), 200); return; }
    if (gd.dataset.cbClick) return;
    gd.dataset.cbClick = '1';
    gd.on('plotly_click', (ev) => {
      const p = ev && ev.points && ev.points[0];
      if (!p) return;
      const code = Array.isArray(p.customdata) ? p.customdata[0] : p.pointNumber;
      const input = document.querySelector('#cb-code input');
      input.value = String(code);
      input.dispatchEvent(new Event('input', {bubbles: true}));
      setTimeout(() => document.querySelector('#cb-show').click(), 60);
    });
  };
  attach(50);
}
"""


@dataclass
class CodebookState:
    """A browser session's codebook run: the cache key of its report."""

    key: str = ""


def summary_frame(report: CodebookReport | None) -> pd.DataFrame:
    """One row per measure, one column per codebook (see tables)."""
    return measures_frame(report.summary_rows() if report else [], SUMMARY_MEASURES, "codebook")


def top_frame(book: CodebookBook | None) -> pd.DataFrame:
    if book is None:
        return pd.DataFrame(columns=TOP_COLUMNS)
    total = max(1, book.stats.num_tokens)
    used = book.stats.most_used[:TOP_ROWS]
    if book.stats.per_position:
        k = book.stats.codes_per_position
        return pd.DataFrame([(c, c // k, c % k, n, round(n / total, 4)) for c, n in used], columns=PER_POSITION_COLUMNS)
    return pd.DataFrame([(c, n, round(n / total, 4)) for c, n in used], columns=TOP_COLUMNS)


def marking_text(book: CodebookBook) -> str:
    """What the example images mark: a grid code's cell, or nothing for a latent token (it has no cell)."""
    if book.grid_side:
        return f"Each image has the code's cell of the {book.grid_side} x {book.grid_side} grid outlined."
    if book.stats.per_position:
        return ("The images are shown whole: a ReVQ token is a slice of the DC-AE latent, which a deep encoder computes "
                "from far more of the image than one cell; the caption names the token position and its id there.")
    return ("The images are shown whole: a latent token is one of a 1-D sequence computed from the whole image, so it "
            "has no cell to outline; the caption names its position in the sequence.")


def book_line(book: CodebookBook) -> str:
    """One codebook's usage in a sentence; a per-position book says what its codes and its entropy are over."""
    s = book.stats
    if s.per_position:
        k = s.codes_per_position
        mean_bits = float(s.position_entropy_bits.mean())
        return (f"{book.title}: {s.used_codes} / {s.codebook_size} position-codes used ({s.num_positions} positions x "
                f"{k} ids; utilisation {s.utilisation:.1%}, the mean share of a position's ids seen), entropy "
                f"{s.entropy_bits:.2f} bits over position-codes = log2 {s.num_positions} + {mean_bits:.2f} bits mean "
                f"per position (of at most {math.log2(k):.2f}), {s.dead_codes.size} dead.")
    dead = ", ".join(str(int(c)) for c in s.dead_codes[:8]) + (" …" if s.dead_codes.size > 8 else "")
    return (f"{book.title}: {s.used_codes} / {s.codebook_size} codes used (utilisation {s.utilisation:.1%}), "
            f"perplexity {s.perplexity:.1f}, {s.dead_codes.size} dead" + (f" ({dead})" if dead else "") + ".")


def family_note(report: CodebookReport) -> str:
    """What this family's codes are, and where the teacher's usage is (or why it is not measured)."""
    tokens = report.book("tokens")
    if report.family == "revq":
        return (f"ReVQ has one codebook per token position, so a code is a (position, id) pair, numbered "
                f"position x {tokens.stats.codes_per_position} + id; the map shows position {MAP_POSITION}'s codebook "
                f"(its ids are its position-codes). It does not decode through the teacher's codes.")
    if report.family == "maskgit_vqgan":
        side = tokens.grid_side or 0
        return (f"This is the teacher itself: its {side} x {side} grid codes are the proxy codes SFTok and TiTok "
                f"predict; a code's examples outline its cell.")
    if "teacher" not in report.books:
        return f"Teacher codebook not measured: {html.escape(report.teacher_note)}."
    return "The teacher's codebook is its usage on the same images: the codes this tokenizer learns to predict."


def status_text(report: CodebookReport) -> str:
    lines = [f"**{html.escape(report.model_label)}** on **{html.escape(report.dataset)}** ({report.split}): "
             f"{report.book('tokens').stats.num_samples} images in {report.seconds:.1f} s."]
    lines += [book_line(book) for book in report.books.values()]
    lines.append(family_note(report))
    return "  \n".join(lines)


class CodebookPage:
    def __init__(self, ctx: AppContext, analyses: AnalysisService) -> None:
        self.ctx, self.analyses = ctx, analyses
        self.state = gr.State(CodebookState())
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                self.model = ModelPicker(ctx.registry, "Tokenizer", TOKENIZERS, name="cb-model",
                                         info="SFTok, TiTok, ReVQ or the MaskGIT-VQGAN teacher")
                self.data = DatasetPicker(ctx.workspace, "cb")
                self.images = gr.Number(256, precision=0, minimum=1, maximum=MAX_USAGE_IMAGES, label="Images (at most)",
                                        elem_id="cb-images", info="the first N images of the split, in order")
                with gr.Row():
                    self.run = gr.Button("Run usage statistics", variant="primary", elem_id="cb-run", scale=3)
                    self.cancel = cancel_button("cb-cancel")
                self.status = gr.Markdown("Pick a dataset and run. Help: `docs/screens.md#codebook`", elem_id="cb-status")
            with gr.Column(scale=2):
                self.summary = gr.Dataframe(summary_frame(None), interactive=False, elem_id="cb-summary",
                                            label="Summary: a column per codebook", wrap=True)
                self.book = gr.Radio(BOOKS, value="tokens", label="Codebook shown below", elem_id="cb-book")
                self.usage = gr.Plot(empty_plot("Run usage statistics to see the codebook's usage"), label="Usage",
                                     elem_id="cb-usage")
        with gr.Row():
            self.heat = gr.Plot(label="Per-position usage", elem_id="cb-heat")
            self.umap = gr.Plot(label="Codebook map: hover for code and count, click a point for its examples",
                                elem_id="cb-umap")
        with gr.Accordion("Examples of a code", open=True):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    with gr.Row(equal_height=True):
                        self.code = gr.Number(0, precision=0, minimum=0, label="Code id", elem_id="cb-code", scale=2)
                        self.show = gr.Button("Show examples", elem_id="cb-show", scale=1)
                    self.top = gr.Dataframe(top_frame(None), interactive=False, elem_id="cb-top", max_height=300,
                                            label="Most used codes (click a row)")
                with gr.Column(scale=3):
                    gr.Markdown("**Images that use this code** (what is marked is said below them)")
                    self.gallery = gr.Gallery(show_label=False, columns=6, height=300,
                                              object_fit="contain", elem_id="cb-examples", allow_preview=True)
                    self.examples_info = gr.Markdown(elem_id="cb-examples-info")
        self._wire()

    # -- events -------------------------------------------------------------------------------------
    def _views(self, report: CodebookReport, book_name: str) -> tuple:
        book = report.book(book_name)
        return usage_plot(book), position_heatmap(book), top_frame(book)

    def on_run(self, model: str, dataset: str | None, split: str, images: float | None, book: str,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Streams the progress (after the first batch, the time for all images and how many fit a minute)."""
        def work(report_progress):
            return self.analyses.codebook(model, dataset, split, images, progress=report_progress)

        def done(found: tuple[str, CodebookReport]) -> tuple:
            key, report = found
            shown = book if book in report.books else "tokens"
            return (CodebookState(key), status_text(report), summary_frame(report), *self._views(report, shown),
                    gr.Radio(value=shown))

        yield from stream_analysis(work, done, 7, 1, progress, "codebook")

    def on_map(self, book: str, state: CodebookState, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Streams the fit's epochs (the first fit in a process compiles numba first; then maps are cached), and
        Cancel ends a fit between epochs."""
        report = self.analyses.codebooks.get(state.key, "codebook run")
        progress(0.0, desc="codebook map (UMAP; the first fit in a process compiles, then it is cached)")

        def work(report_progress):
            return self.analyses.codebook_map(state.key, book, report_progress)

        def done(embedding) -> tuple:
            return codebook_map(embedding, report.book(book)), status_text(report)

        yield from stream_analysis(work, done, 2, 1, progress, "codebook map")

    def on_view(self, book: str, state: CodebookState) -> tuple:
        report = self.analyses.codebooks.get(state.key, "codebook run")
        return self._views(report, book)

    def on_examples(self, code: float | None, book: str, state: CodebookState) -> tuple:
        report = self.analyses.codebooks.get(state.key, "codebook run")
        found = code_examples(report, book, code, EXAMPLES)
        stats = report.book(book).stats
        count = int(stats.counts[int(code)])
        if not found:
            return [], f"Code **{int(code)}** was never used on these {stats.num_samples} images (a dead code)."
        shown = [(e.image, e.caption) for e in found if e.image is not None]
        listed = "; ".join(html.escape(e.caption) for e in found)
        return shown, (f"Code **{int(code)}**: used {count} times; {len(found)} of its uses kept at random "
                       f"(reservoir): {listed}. {marking_text(report.book(book))}")

    def on_pick(self, table: pd.DataFrame, evt: gr.SelectData) -> float:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return int(table.iloc[int(row)]["code"])

    def _wire(self) -> None:
        run = self.run.click(user_errors(self.on_run),
                             [self.model.dropdown, self.data.dropdown, self.data.split, self.images, self.book],
                             [self.state, self.status, self.summary, self.usage, self.heat, self.top, self.book],
                             api_name="codebook_usage", show_progress="full")
        keep_error_visible(run, self.status)
        drawn = run.success(user_errors(self.on_map), [self.book, self.state], [self.umap, self.status],
                            api_name="codebook_map", show_progress="minimal")
        view = self.book.input(user_errors(self.on_view), [self.book, self.state], [self.usage, self.heat, self.top],
                               api_name="codebook_view", show_progress="minimal")
        redrawn = view.success(user_errors(self.on_map), [self.book, self.state], [self.umap, self.status],
                               api_visibility="private", show_progress="minimal")
        wire_cancel(self.cancel, self.status, [run, drawn, redrawn], "codebook_cancel")
        gr.on([self.show.click, self.code.submit], user_errors(self.on_examples), [self.code, self.book, self.state],
              [self.gallery, self.examples_info], api_name="codebook_examples", show_progress="minimal")
        pick = self.top.select(self.on_pick, [self.top], [self.code], api_visibility="private", show_progress="hidden")
        pick.success(user_errors(self.on_examples), [self.code, self.book, self.state],
                     [self.gallery, self.examples_info], api_visibility="private", show_progress="minimal")
        self.umap.change(None, js=CLICK_JS, api_visibility="private")


    def reload_lists_on(self, triggers: list) -> None:
        self.model.reload_on(triggers)
        self.data.reload_on(triggers)


def build(ctx: AppContext, analyses: AnalysisService) -> CodebookPage:
    return CodebookPage(ctx, analyses)


__all__ = ["CodebookPage", "CodebookState", "build", "status_text", "summary_frame", "top_frame"]
