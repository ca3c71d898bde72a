"""Start the SFTok Workbench: ``python app.py [--model PATH] [--workspace DIR] [--device D] [--host H --port P --auth U:P]``."""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from workbench.runs.store import StoreLockedError
from workbench.services.devices import DEVICE_CHOICES, DeviceUnavailable, Placement, resolve_device
from workbench.services.model_registry import (DEFAULT_COMPARISON_DIR, DEFAULT_GENERATOR_DIR, DEFAULT_MODEL_DIR,
                                               DEFAULT_TEACHER_DIR, DEFAULT_TITOK_DIR, ModelRegistry, ModelUnavailable,
                                               missing_default_message)
from workbench.ui import AppContext, ServeOptions, UnsafeBind, build_app, launch_app
from workbench.ui.app import parse_auth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                   help="the tokenizer the app starts with: a saved model folder (default: %(default)s)")
    p.add_argument("--teacher", default=str(DEFAULT_TEACHER_DIR),
                   help="the teacher that renders pixels for stage-1/2 models (default: %(default)s)")
    p.add_argument("--generator", default=str(DEFAULT_GENERATOR_DIR),
                   help="the generator the Generate screen offers first, if that folder exists (default: %(default)s)")
    p.add_argument("--comparison", default=None,
                   help="a tokenizer offered beside the default on every screen, for side-by-side measurements "
                        f"(default: {DEFAULT_COMPARISON_DIR} with the embedded model, none with --model; "
                        "'none' to leave it out)")
    p.add_argument("--device", default="auto",
                   help=f"where every screen's models run: {DEVICE_CHOICES} (default: %(default)s, the first CUDA GPU, "
                        "else mps, else cpu); training jobs keep their own device setting")
    p.add_argument("--workspace", default="workspace",
                   help="jobs, metrics and exports live here; the only folder the app's file pickers see")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--auth", default=os.environ.get("SFTOK_AUTH"),
                   help="USER:PASSWORD required by the browser (or env SFTOK_AUTH); needed off loopback")
    return p.parse_args(argv)


def comparison_dir(choice: str | None, model_dir: Path) -> Path | None:
    """The comparison model: the one named, or the embedded default's twin when the default itself is used."""
    if choice is not None:
        return None if choice.lower() == "none" else Path(choice)
    return DEFAULT_COMPARISON_DIR if model_dir.resolve() == DEFAULT_MODEL_DIR.resolve() else None


def titok_dir(teacher: Path) -> Path | None:
    """The embedded TiTok baseline, offered when the app renders with the teacher it was trained against."""
    return DEFAULT_TITOK_DIR if teacher.resolve() == DEFAULT_TEACHER_DIR.resolve() else None


def describe_model(model_dir: Path) -> str:
    """One line about the model folder from its config.json, without loading the weights."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text()).get("config", {})
        return (f"{model_dir} ({cfg['image_size']} px, {cfg['num_latent_tokens']} tokens, "
                f"codebook {cfg['codebook_size']})")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return str(model_dir)


def load_in_background(registry: ModelRegistry) -> threading.Thread:
    """Load and warm the default model in the background, so the page is up seconds earlier; the first
    decode waits for it (the registry's lock) and a model that cannot load is reported there and here."""
    def load() -> None:
        try:
            registry.get("default")
        except ModelUnavailable as err:
            print(f"error: {err}", file=sys.stderr)

    thread = threading.Thread(target=load, name="load-default-model", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = ServeOptions(args.host, args.port, parse_auth(args.auth))
        options.check()
    except (UnsafeBind, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
    except DeviceUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"error: {missing_default_message(model_dir)}", file=sys.stderr)
        return 1
    comparison = comparison_dir(args.comparison, model_dir)
    try:
        ctx = AppContext.create(args.workspace, model_dir=model_dir, teacher_dir=args.teacher,
                                generator_dir=args.generator, comparison_dir=comparison, placement=Placement(device),
                                titok_dir=titok_dir(Path(args.teacher)))
    except StoreLockedError as err:  # another app (or store CLI) owns this workspace's database
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"model: {describe_model(model_dir)}; device: {device}; workspace: {ctx.workspace.root}")
    demo = build_app(ctx)
    _, url, _ = launch_app(demo, ctx, options, block=False)
    print(f"serving on {url}", flush=True)
    load_in_background(ctx.registry)  # after the server is up: the load would otherwise compete with its start
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
