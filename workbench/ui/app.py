"""The workbench as one ``gr.Blocks``: a tab per screen, plus how to launch it safely.

``build_app`` only lays out screens; ``launch_app`` applies the serving rules (loopback by default,
auth required off loopback, upload size limit, downloads only from the workspace exports folder).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import gradio as gr

from workbench.services.analyses import AnalysisService
from workbench.ui.pages import codebook, compare, evaluate, generate, information, reconstruct, train
from workbench.ui.context import AppContext

MAX_UPLOAD = "25mb"
CSS = """
.token-grid { display: grid; grid-template-columns: repeat(var(--cols), minmax(3.2em, 1fr)); gap: 3px;
              font-family: ui-monospace, monospace; font-size: 0.92em; max-width: 42em; }
.token-grid .tok { border: 1px solid var(--border-color-primary); border-radius: 4px; padding: 2px 4px;
                   text-align: right; background: var(--background-fill-secondary); }
.token-grid .tok .pos { float: left; color: var(--body-text-color-subdued); font-size: 0.72em; }
.token-grid .tok.edited { background: #f5962833; border-color: #f59628; font-weight: 600; }
.token-grid-empty { color: var(--body-text-color-subdued); }
#app-title h1 { margin-bottom: 0; }
.scrub-bar { display: flex; align-items: center; gap: 1em; margin: 0.3em 0 0.6em; }
.scrub-bar label { display: flex; align-items: center; gap: 0.5em; flex: 1; }
.scrub-range { flex: 1; accent-color: #e8912d; }
.scrub-panels { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; }
.scrub-panel { margin: 0; }
.scrub-panel figcaption { font-size: 0.9em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.scrub-panel img { width: 100%; max-width: 270px; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated;
                   display: block; border: 1px solid var(--border-color-primary); border-radius: 4px; }
.scrub-scale { display: flex; align-items: center; gap: 0.4em; font-size: 0.8em; max-width: 270px; margin-top: 4px; }
.scrub-scale-bar { flex: 1; height: 0.8em; border-radius: 2px; }
.scrub-legend, .scrub-info { font-size: 0.9em; margin-top: 0.5em; }
.scrub-empty { color: var(--body-text-color-subdued); padding: 1em 0; }
.status-error { color: var(--error-text-color, #b91c1c); }
#info-summary th, #info-summary th *, #cb-summary th, #cb-summary th *,
#train-sweep-table th, #train-sweep-table th *, #train-jobs th, #train-jobs th * { word-break: normal;
                                                                                   overflow-wrap: normal; hyphens: none; }
"""


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="SFTok Workbench", analytics_enabled=False) as demo:
        gr.Markdown("# SFTok Workbench\nA discrete 1D image tokenizer, decoded one step at a time. To start, pick a "
                    "sample below, press Reconstruct and drag the Step slider to watch the decode, step by step; "
                    "Information compares two models (SFVR against vanilla, on the embedded default). Every screen is "
                    "explained in `docs/screens.md`.",
                    elem_id="app-title")
        with gr.Tabs():
            pages = []
            with gr.Tab("Reconstruct", id="reconstruct") as tab:
                pages.append((tab, reconstruct.build(ctx)))
            with gr.Tab("A/B", id="compare") as tab:
                pages.append((tab, compare.build(ctx)))
            if ctx.jobs is not None:
                with gr.Tab("Train", id="train") as tab:
                    pages.append((tab, train.build(ctx)))
                with gr.Tab("Evaluate", id="evaluate") as tab:
                    pages.append((tab, evaluate.build(ctx)))
            with gr.Tab("Generate", id="generate") as tab:
                pages.append((tab, generate.build(ctx)))
            analyses = AnalysisService(ctx.registry, ctx.workspace)  # one queue of analyses for both screens
            with gr.Tab("Codebook", id="codebook") as tab:
                pages.append((tab, codebook.build(ctx, analyses)))
            with gr.Tab("Information", id="information") as tab:
                pages.append((tab, information.build(ctx, analyses)))
        for tab, page in pages:  # lists of models, datasets and runs are read when a screen opens
            page.reload_lists_on([demo.load, tab.select])
            if hasattr(page, "restore_on"):  # settings kept in the browser come back on a reload
                page.restore_on(tab.select)
    return demo


class UnsafeBind(RuntimeError):
    """The app would be reachable from other machines without a password."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``user:pass`` -> (user, pass); empty -> None; malformed -> ValueError naming the format."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("auth: expected USER:PASSWORD with both parts non-empty")
    return user, password


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int | None = None
    auth: tuple[str, str] | None = None

    def check(self) -> None:
        if not is_loopback(self.host) and self.auth is None:
            raise UnsafeBind(f"refusing to listen on {self.host} without a password: anyone on the network could "
                             "run models and training jobs. Pass --auth USER:PASSWORD (or set SFTOK_AUTH), "
                             "or bind to 127.0.0.1.")


def launch_app(demo: gr.Blocks, ctx: AppContext, options: ServeOptions, block: bool = True):
    """Start serving; ``block=False`` returns at once (tests) with (app, local_url, share_url)."""
    options.check()
    demo.queue(default_concurrency_limit=2)
    return demo.launch(
        server_name=options.host, server_port=options.port, auth=options.auth, prevent_thread_lock=not block,
        max_file_size=MAX_UPLOAD, allowed_paths=[str(ctx.exports_dir)], share=False, inbrowser=False,
        show_error=False, quiet=not block, css=CSS, footer_links=["api", "settings"], ssr_mode=False,
        theme=gr.themes.Soft(primary_hue="blue", secondary_hue="orange"))
