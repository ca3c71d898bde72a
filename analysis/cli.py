"""``python -m analysis {steps,codebook,umap,mi,eval,gen-eval}``: run one analysis, write JSON/CSV and an HTML report.

Every subcommand takes a saved SFTok model folder (``--model``), optionally the MaskGIT-VQGAN
teacher (``--teacher``; needed for proxy-code statistics, and for pixels from stage-1/2 models),
images (``--data``: a folder, image files, or webdataset ``.tar`` shards / a glob of them) and an
output folder (``--out``). Nothing is downloaded; missing LPIPS/Inception weights are reported and
the other metrics still computed.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from core import MaskGITVQGAN, SFTok, load_pretrained_as
from core.checkpoint import CheckpointError
from core.config import ConfigError
from core.perceptual import MissingWeightsError
from core.tokenizer import TeacherTokenizer, Tokenizer, load_tokenizer

from .umap_embedding import codebook_umap, default_cache_dir
from .data import ImageBatch, iter_image_batches
from .eval_run import EvalConfig, run_evaluation, unique_labels
from .gen_eval import GenEvalConfig, run_generator_evaluation
from .estimators import neighbour_mutual_information, pairwise_mutual_information
from .metric_suite import load_metric_suite
from .model_mi import decode_trajectory, leave_one_out_mi, self_forcing_gap, sftok_mi_inputs, trajectory_information
from .render import (loo_mi_figure, pairwise_mi_figure, per_step_figure, self_forcing_figure, step_sweep_figure,
                     trajectory_figure, umap_figure, usage_figure)
from .report import Section, write_csv, write_html_report, write_json
from .steps import evaluate_steps
from .usage import UsageStats, codebook_title, collect_tokenizer_usage, map_codebook


T = TypeVar("T")


IMAGE_SIZE_HELP = "with the MaskGIT-VQGAN teacher as --model: the image size its codes are counted at (default 256)"


class UsageError(ValueError):
    """A command-line argument is invalid; the message names it."""


# -- loading ---------------------------------------------------------------------------------------
def load_model(path: str, device: str) -> SFTok:
    return load_pretrained_as(path, SFTok, "--model").to(device).eval()


def load_teacher(path: str | None, device: str) -> MaskGITVQGAN | None:
    if path is None:
        return None
    return load_pretrained_as(path, MaskGITVQGAN, "--teacher").to(device).eval()


def load_any_tokenizer(path: str, device: str, teacher: MaskGITVQGAN | None, image_size: int | None = None) -> Tokenizer:
    """Any tokenizer ``core.tokenizer.load_tokenizer`` reads (SFTok, TiTok, ReVQ with its DC-AE, the teacher). The
    MaskGIT-VQGAN teacher is convolutional and its folder does not record a size: ``image_size`` (default 256, the
    release's)."""
    try:
        tok = load_tokenizer(path, device, teacher)
    except CheckpointError as err:
        raise UsageError(f"--model: {err}") from err
    if isinstance(tok, TeacherTokenizer) and image_size:
        tok = TeacherTokenizer(tok.module, image_size)
    return tok


def attach(model: SFTok, teacher: MaskGITVQGAN | None) -> SFTok:
    if teacher is not None and not model.has_pixel_head:
        model.attach_teacher(teacher)
    return model


def batches(args: argparse.Namespace, image_size: int, limit: int | None, desc: str) -> Iterator[ImageBatch]:
    if not args.data:
        raise UsageError("--data: this command needs images (a folder, image files or .tar shards)")
    it = iter_image_batches(args.data, image_size, args.batch_size, limit)
    if args.progress:
        from tqdm.auto import tqdm

        total = None if limit is None else -(-limit // args.batch_size)
        return iter(tqdm(it, desc=desc, unit="batch", total=total, file=sys.stderr))
    return it


def print_table(rows: Sequence[Any], columns: Sequence[str]) -> None:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [[cell(getattr(r, c) if not isinstance(r, dict) else r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for t in table:
        print("  ".join(v.rjust(w) for v, w in zip(t, widths)))


def parse_list(text: str, name: str, convert: Callable[[str], T], what: str) -> list[T]:
    """A comma-separated option value as a non-empty list; a bad item names the option and what it expects."""
    try:
        values = [convert(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise UsageError(f"{name}: expected comma-separated {what}, got {text!r}") from err
    if not values:
        raise UsageError(f"{name}: empty list")
    return values


def parse_int_list(text: str, name: str) -> list[int]:
    return parse_list(text, name, int, "integers")


def parse_float_list(text: str, name: str) -> list[float]:
    return parse_list(text, name, float, "numbers")


# -- steps -----------------------------------------------------------------------------------------
def cmd_steps(args: argparse.Namespace) -> int:
    teacher = load_teacher(args.teacher, args.device)
    model = attach(load_model(args.model, args.device), teacher)
    suite = load_metric_suite(lpips=not args.no_lpips, fid=not args.no_fid, lpips_net=args.lpips_net,
                              lpips_weights=args.lpips_weights, inception_weights=args.inception_weights,
                              device=args.device)
    for name, message in suite.skipped.items():
        print(f"note: {name} skipped: {message}", file=sys.stderr)
    result = evaluate_steps(model, batches(args, model.config.image_size, args.num_images, "steps"), args.steps,
                            parse_int_list(args.sweep, "--sweep"), args.temperature, args.seed, suite,
                            teacher=teacher)
    out = Path(args.out)
    write_json(out / "steps.json", result)
    write_csv(out / "steps_per_step.csv", result.per_step)
    write_csv(out / "steps_sweep.csv", result.sweep)
    if result.teacher_context:
        write_csv(out / "steps_teacher_context.csv", result.teacher_context)
    notes = "\n".join([f"{k}: {v}" for k, v in result.protocol.items()] +
                      [f"skipped {k}: {v}" for k, v in result.skipped.items()])
    write_html_report(out / "steps_report.html", f"Reconstruction quality per step ({args.model})", [
        Section("Per-step quality", [per_step_figure(result)], result.per_step, notes),
        Section("Step-count sweep", [step_sweep_figure(result)], result.sweep)])
    cols = ["label", "num_images", "psnr", "ssim", "lpips", "rfid"]
    print_table(result.per_step, cols)
    if result.teacher_context:
        print("\nthe same passes with the teacher's codes at the committed slots (what right commits would give):")
        print_table(result.teacher_context, cols)
        print("share of each step's new commits equal to the teacher's code: "
              + ", ".join(f"{a:.3f}" for a in result.committed_accuracy))
    print()
    print_table(result.sweep, cols)
    return 0


# -- codebook --------------------------------------------------------------------------------------
def write_usage(out: Path, prefix: str, stats: UsageStats) -> None:
    write_json(out / f"{prefix}.json", {**stats.summary(), "dead_codes": stats.dead_codes,
                                       "most_used": stats.most_used, "least_used": stats.least_used})
    write_csv(out / f"{prefix}_counts.csv", [{"code": c, "count": int(n)} for c, n in enumerate(stats.counts)])
    write_csv(out / f"{prefix}_positions.csv", [
        {"position": p, "entropy_bits": float(stats.position_entropy_bits[p]),
         "perplexity": float(stats.position_perplexity[p]), "utilisation": float(stats.position_utilisation[p])}
        for p in range(stats.num_positions)])
    if stats.examples:
        write_json(out / f"{prefix}_examples.json", {c: [list(ref) for ref in refs] for c, refs in stats.examples.items()})


def collect_usage(args: argparse.Namespace, tok: Tokenizer, teacher: MaskGITVQGAN | None, reservoir: int,
                  top: int = 20) -> tuple[UsageStats, UsageStats | None]:
    """Usage of any tokenizer's codebook, and the teacher's beside it where the tokenizer predicts its codes."""
    proxy = TeacherTokenizer(teacher, tok.info.image_size) if teacher is not None and tok.predicts_teacher_codes else None
    return collect_tokenizer_usage(tok, proxy, batches(args, tok.info.image_size, args.num_images, "codebook"),
                                   reservoir, args.seed, top)


def cmd_codebook(args: argparse.Namespace) -> int:
    teacher = load_teacher(args.teacher, args.device)
    tok = load_any_tokenizer(args.model, args.device, teacher, args.image_size)
    stats, proxy = collect_usage(args, tok, teacher, args.reservoir, args.top)
    out = Path(args.out)
    write_usage(out, "codebook", stats)
    title = codebook_title(tok.info.family, tok.info, stats.per_position)
    sections = [Section(title, [usage_figure(stats, f"{tok.info.family} codebook")],
                        [stats.summary()], f"most used: {stats.most_used[:10]}\nleast used: {stats.least_used[:10]}")]
    summaries = [{"codebook": tok.info.family, **stats.summary()}]
    if proxy is not None:
        write_usage(out, "teacher_codebook", proxy)
        sections.append(Section("Teacher codebook (proxy codes)", [usage_figure(proxy, "Teacher codebook")],
                                [proxy.summary()]))
        summaries.append({"codebook": "teacher", **proxy.summary()})
    write_html_report(out / "codebook_report.html", f"Codebook usage ({args.model})", sections)
    print_table(summaries, ["codebook", "num_samples", "used_codes", "utilisation", "entropy_bits", "perplexity",
                            "mean_position_entropy_bits"])
    return 0


# -- umap ------------------------------------------------------------------------------------------
def read_counts(path: str, size: int) -> np.ndarray:
    counts = np.zeros(size, dtype=np.int64)
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if "code" not in row or "count" not in row:
                raise UsageError(f"--usage: {path} needs 'code' and 'count' columns (codebook_counts.csv)")
            code = int(row["code"])
            if not 0 <= code < size:
                raise UsageError(f"--usage: code {code} outside the codebook of size {size}")
            counts[code] = int(row["count"])
    return counts


def cmd_umap(args: argparse.Namespace) -> int:
    teacher = load_teacher(args.teacher, args.device)
    tok = load_any_tokenizer(args.model, args.device, teacher, args.image_size)
    vectors = map_codebook(tok)  # ReVQ: position MAP_POSITION's codebook, whose ids are position-codes 0..K-1
    counts = proxy_counts = None
    if args.usage:
        counts = read_counts(args.usage, vectors.shape[0])
    elif args.data:
        stats, proxy = collect_usage(args, tok, teacher, 0)
        counts, proxy_counts = stats.counts[:vectors.shape[0]], (proxy.counts if proxy else None)
    books = [(tok.info.family, vectors, counts)]
    if teacher is not None and tok.predicts_teacher_codes:
        books.append(("teacher", teacher.quantize.embedding.weight.detach(), proxy_counts))
    out = Path(args.out)
    sections, summary = [], []
    for name, vectors, book_counts in books:
        emb = codebook_umap(vectors, args.seed, args.n_neighbors, args.min_dist, args.n_epochs, args.cache_dir)
        rows = [{"code": c, "x": float(x), "y": float(y), "count": None if book_counts is None else int(book_counts[c])}
                for c, (x, y) in enumerate(emb.coords)]
        write_csv(out / f"umap_{name}.csv", rows)
        info = {"codebook": name, "codes": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
                "codebook_hash": emb.codebook_hash, "from_cache": emb.from_cache, "seconds": emb.seconds, **emb.params}
        summary.append(info)
        sections.append(Section(f"{name} codebook", [umap_figure(emb, book_counts, f"{name} codebook UMAP")], [info]))
    write_json(out / "umap.json", summary)
    write_html_report(out / "umap_report.html", f"Codebook UMAP ({args.model})", sections)
    print_table(summary, ["codebook", "codes", "dim", "from_cache", "seconds"])
    return 0


# -- mi --------------------------------------------------------------------------------------------
@torch.no_grad()
def cmd_mi(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.device)
    teacher = load_teacher(args.teacher, args.device)
    compare = [load_model(p, args.device) for p in args.compare]
    if compare and teacher is None:
        raise UsageError("--compare: needs --teacher, so every checkpoint is measured against the same true codes")
    labels = unique_labels([args.model, *args.compare])
    models = list(zip(labels, [model, *compare]))
    parts: dict[str, list] = {name: [] for name, _ in models}
    token_images = max(args.num_images, args.token_images or 0)
    tokens, grids, seen = [], [], 0
    for batch in batches(args, model.config.image_size, token_images, "encode"):
        images = batch.images.to(args.device)
        model_part = images[:max(0, args.num_images - seen)]  # the model-based estimators use the first images
        seen += images.shape[0]
        if model_part.shape[0]:
            for name, m in models:
                parts[name].append(sftok_mi_inputs(m, model_part, teacher, args.steps, args.temperature, args.seed))
        rest = images[model_part.shape[0]:]
        if rest.shape[0]:  # extra images for the count-based token statistics only
            tokens.append(model.encode(rest, per_image=True)[1]["min_encoding_indices"][:, 0])
            if teacher is not None:
                grids.append(teacher.encode(rest))
    first = parts[labels[0]]
    if not first:
        raise UsageError("--data: no images")
    z_q = torch.cat([p.z_q for p in first])
    targets = torch.cat([p.targets for p in first])
    tokens = torch.cat([p.token_ids for p in first] + tokens).cpu().numpy()
    grids = torch.cat([targets, *grids]).cpu().numpy()
    mask_id, decoder = first[0].mask_id, first[0].decoder
    num_slots = targets.shape[1]
    positions = None
    if args.positions:
        rng = np.random.default_rng(args.seed)
        positions = np.sort(rng.choice(num_slots, size=min(args.positions, num_slots), replace=False)).tolist()
    temperature = model.config.randomize_temperature if args.temperature is None else args.temperature
    print(f"leave-one-out over {targets.shape[0]} images x {len(positions or range(num_slots))} slots "
          f"(targets: {first[0].target_source})", file=sys.stderr)
    loo = leave_one_out_mi(decoder, targets, z_q, mask_id, positions, args.rows, args.bootstrap, seed=args.seed)
    traj = decode_trajectory(decoder, z_q, num_slots, mask_id, args.steps, temperature, args.seed)
    info = trajectory_information(decoder, z_q, targets, mask_id, args.steps, temperature, args.seed, traj,
                                  args.max_block_slots, args.rows)
    gaps = {labels[0]: self_forcing_gap(decoder, z_q, targets, mask_id, args.steps, temperature, args.seed, traj)}
    for name, m in models[1:]:
        zc = torch.cat([p.z_q for p in parts[name]])
        gaps[name] = self_forcing_gap(m.decoder, zc, targets, mask_id, args.steps, temperature, args.seed)
    pair = pairwise_mutual_information(tokens, "miller_madow", args.shuffles, args.seed)
    neighbours = neighbour_mutual_information(grids, "miller_madow", args.shuffles, args.seed)
    out = Path(args.out)
    loo_rows = [{"position": int(p), "bits": float(b), "ci_low": float(lo), "ci_high": float(hi),
                 "ce_all_bits": float(a), "ce_loo_bits": float(c)}
                for p, b, lo, hi, a, c in zip(loo.positions, loo.bits, loo.ci_low, loo.ci_high, loo.ce_all_bits,
                                              loo.ce_loo_bits)]
    gap_rows = [{"model": name, **vars(r)} for name, g in gaps.items() for r in g.rows]
    token_summary = {
        "token_images": int(tokens.shape[0]), "proxy_grid_images": int(grids.shape[0]),
        "latent_pairwise_mean_bits": pair.off_diagonal_mean(),
        "latent_pairwise_mean_excess_bits": pair.off_diagonal_mean(excess=True) if args.shuffles else None,
        **{f"proxy_{k}_{f}": getattr(v, f) for k, v in neighbours.items()
           for f in ("bits", "shuffle_mean_bits", "excess_bits")},
    }
    write_csv(out / "mi_loo.csv", loo_rows)
    write_csv(out / "mi_trajectory.csv", info.rows)
    write_csv(out / "mi_self_forcing.csv", gap_rows)
    write_json(out / "mi.json", {
        "target_source": first[0].target_source, "num_images": loo.num_images, "loo_mean_bits": loo.mean_bits,
        "loo_mean_ci": loo.mean_ci, "confidence": loo.confidence, "trajectory": info, "self_forcing": gaps,
        "tokens": token_summary, "latent_pairwise_bits": pair.bits})
    write_html_report(out / "mi_report.html", f"Mutual information ({args.model})", [
        Section("Leave-one-out conditional MI", [loo_mi_figure(loo)],
                text=f"targets: {first[0].target_source}; {loo.num_images} images"),
        Section("Decode trajectory", [trajectory_figure(info)], info.rows),
        Section("Self-forcing gap", [self_forcing_figure(gaps)], gap_rows),
        Section("Token statistics (count-based, Miller-Madow, shuffle baseline)", [pairwise_mi_figure(pair)],
                [token_summary])])
    print(f"LOO MI: {loo.mean_bits:.4f} bits/slot [{loo.mean_ci[0]:.4f}, {loo.mean_ci[1]:.4f}]")
    print_table(info.rows, ["step", "mask_ratio_in", "info_gain_bits_per_image", "teacher_gain_bits_per_image",
                            "block_tc_bits", "block_slots"])
    print_table(gap_rows, ["model", "step", "kl_bits", "revealed_accuracy", "committed_accuracy"])
    return 0


# -- eval ------------------------------------------------------------------------------------------
def parse_temperatures(text: str) -> list[float | None]:
    """``0,0.5,default``: floats, ``default`` = each model's own temperature."""
    values: list[float | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            values.append(None if part == "default" else float(part))
        except ValueError as err:
            raise UsageError(f"--temperatures: expected numbers or 'default', got {part!r}") from err
    if not values or any(v is not None and v < 0 for v in values):
        raise UsageError(f"--temperatures: expected non-negative numbers, got {text!r}")
    return values


def inception_fetch_hint() -> str:
    from .fid import INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL
    from core.perceptual import hub_checkpoint_dir

    return (f"online, fetch it once with: curl -L --create-dirs -o {hub_checkpoint_dir() / INCEPTION_WEIGHTS_FILE} "
            f"{INCEPTION_WEIGHTS_URL}")


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The evaluation an ``eval`` command line asks for (also read by the app's evaluation jobs)."""
    return EvalConfig(
        models=tuple(args.model), data=tuple(args.data), out=args.out, steps=tuple(parse_int_list(args.steps, "--steps")),
        temperatures=tuple(parse_temperatures(args.temperatures)), num_images=args.num_images,
        batch_size=args.batch_size, seed=args.seed, inception_weights=args.inception_weights, teacher=args.teacher,
        reference=args.reference, save_reference=args.save_reference, lpips=not args.no_lpips,
        lpips_net=args.lpips_net, lpips_weights=args.lpips_weights, checkpoint_every=args.checkpoint_every,
        resume=args.resume, device=args.device)


def is_main_rank() -> bool:
    """Under torchrun only rank 0 prints tables and progress."""
    import os

    return int(os.environ.get("RANK", 0)) == 0


def run_with_rank0_progress(args: argparse.Namespace, desc: str, evaluate: Callable[[Callable], Any]) -> Any:
    """``evaluate(progress)`` with a tqdm bar of rank 0's images (when ``--progress``); a missing Inception file
    gets the command that fetches it."""
    bar = None
    if args.progress and is_main_rank():
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"{desc} (rank 0)", unit="img", total=None, file=sys.stderr)

    def progress(done: int, total: int | None) -> None:
        if bar is not None:
            bar.total, bar.n = total, done
            bar.refresh()

    try:
        return evaluate(progress)
    except MissingWeightsError as err:
        raise MissingWeightsError(f"{err}\n{inception_fetch_hint()}") from err
    finally:
        if bar is not None:
            bar.close()


def cmd_eval(args: argparse.Namespace) -> int:
    config = eval_config(args)
    result = run_with_rank0_progress(args, "eval", lambda progress: run_evaluation(config, progress))
    if is_main_rank():
        print_table(result.records, ["label", "steps", "temperature", "num_images", "rfid", "is", "psnr", "ssim",
                                     "lpips", "codebook_usage", "codebook_entropy_bits"])
        print(f"protocol: {result.records[0]['protocol']}; reference: {result.records[0]['reference']} "
              f"({result.records[0]['reference_num_images']} images)")
        print(f"results: {Path(args.out) / 'results.json'}")
    return 0


# -- gen-eval --------------------------------------------------------------------------------------
def gen_eval_config(args: argparse.Namespace) -> GenEvalConfig:
    """The generator evaluation a ``gen-eval`` command line asks for."""
    return GenEvalConfig(
        generator=args.generator, tokenizer=args.tokenizer, reference=args.reference, out=args.out,
        num_images=args.num_images, steps=tuple(parse_int_list(args.steps, "--steps")),
        guidance=tuple(parse_float_list(args.guidance, "--guidance")), temperature=args.temperature,
        decode_steps=args.decode_steps, decode_temperature=args.decode_temperature, batch_size=args.batch_size,
        seed=args.seed, inception_weights=args.inception_weights, teacher=args.teacher,
        precision_recall=not args.no_precision_recall, refit_reference=not args.no_refit_reference,
        checkpoint_every=args.checkpoint_every, resume=args.resume,
        device=args.device)


def cmd_gen_eval(args: argparse.Namespace) -> int:
    config = gen_eval_config(args)
    result = run_with_rank0_progress(args, "gen-eval", lambda progress: run_generator_evaluation(config, progress))
    if is_main_rank():
        print_table(result.records, ["steps", "guidance", "num_images", "gfid", "is", "is_adm_splits", "precision",
                                     "recall", "gfid_our_reference_stats"])
        first = result.records[0]
        print(f"reference: {first['reference']} ({first['reference_num_images']} images; {first['reference_protocol']})")
        for note in first["notes"]:
            print(f"note: {note}")
        print(f"results: {Path(args.out) / 'results.json'}")
    return 0


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, default_images: int | None, data_required: bool = True) -> None:
        p.add_argument("--model", required=True, help="saved SFTok folder (config.json + weights)")
        p.add_argument("--teacher", help="saved MaskGIT-VQGAN teacher folder")
        p.add_argument("--data", nargs="+", required=data_required, help="image folder(s), image files or .tar shards")
        p.add_argument("--num-images", type=int, default=default_images, help=f"default {default_images or 'all'}")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--no-progress", dest="progress", action="store_false")

    p = sub.add_parser("steps", help="PSNR/SSIM/LPIPS/rFID after each decode step and over step counts")
    common(p, 1000)
    p.add_argument("--steps", type=int, default=None, help="steps of the per-step decode (default: model config)")
    p.add_argument("--sweep", default="1,2,4,8,16", help="step counts of the sweep")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    p.add_argument("--lpips-weights", help="torchvision backbone file (default: torch hub cache)")
    p.add_argument("--inception-weights", help="weights-inception-2015-12-05-6726825d.pth (default: torch hub cache)")
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--no-fid", action="store_true")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("codebook", help="usage, entropy, dead codes, per-position statistics, example references")
    common(p, None)
    p.add_argument("--reservoir", type=int, default=16, help="references kept per code (0 = none)")
    p.add_argument("--top", type=int, default=20, help="most/least used codes to list")
    p.add_argument("--image-size", type=int, default=None, help=IMAGE_SIZE_HELP)
    p.set_defaults(func=cmd_codebook)

    p = sub.add_parser("umap", help="2-D UMAP of the codebook, coloured by usage, cached per codebook")
    common(p, None, data_required=False)
    p.add_argument("--usage", help="codebook_counts.csv from the codebook command (instead of --data)")
    p.add_argument("--cache-dir", default=str(default_cache_dir()))
    p.add_argument("--n-neighbors", type=int, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.add_argument("--n-epochs", type=int, default=200)
    p.add_argument("--image-size", type=int, default=None, help=IMAGE_SIZE_HELP)
    p.set_defaults(func=cmd_umap)

    p = sub.add_parser("mi", help="leave-one-out MI, trajectory information, self-forcing gap, token MI")
    common(p, 64)
    p.add_argument("--compare", nargs="*", default=[], help="more checkpoints for the self-forcing gap")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--positions", type=int, default=None, help="measure a random subset of this many slots")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--max-block-slots", type=int, default=None, help="cap the chain-rule block per step")
    p.add_argument("--shuffles", type=int, default=5, help="shuffle-baseline repeats for token MI")
    p.add_argument("--token-images", type=int, default=None,
                   help="images for the count-based token statistics (default: --num-images; more is cheap)")
    p.add_argument("--rows", type=int, default=128, help="decoder rows per forward pass")
    p.set_defaults(func=cmd_mi)

    p = sub.add_parser("eval", help="rFID / IS / PSNR / SSIM / LPIPS / codebook usage per model x decoding steps; "
                                    "runs under torchrun with N processes and resumes after a kill")
    p.add_argument("--model", nargs="+", required=True, help="tokenizer folders or files (any the app loads)")
    p.add_argument("--teacher", help="MaskGIT-VQGAN teacher, for stage-1/2 models that render through it")
    p.add_argument("--data", nargs="+", required=True, help="image folder(s), image files or .tar shards")
    p.add_argument("--num-images", type=int, default=None, help="the first N images of --data (default all)")
    p.add_argument("--steps", default="1,2,4,8", help="decoding step counts")
    p.add_argument("--temperatures", default="default",
                   help="sampling temperatures, e.g. 0,1 ('default' = the model's own)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch on each process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--inception-weights", help="weights-inception-2015-12-05-6726825d.pth (default: torch hub cache)")
    p.add_argument("--reference", help="reference statistics .npz of the real images (ours or an ADM batch)")
    p.add_argument("--save-reference", help="write the real images' statistics of this run to this .npz")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    p.add_argument("--lpips-weights", help="torchvision backbone file (default: torch hub cache)")
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=20, help="batches between saved partial statistics")
    p.add_argument("--resume", action="store_true", help="continue from OUT/partial (same settings and process count)")
    p.add_argument("--out", required=True, help="output folder (results.json)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("gen-eval", help="gFID / IS / precision-recall of the class-conditional generator against an "
                                        "ADM reference batch; class-balanced seeded samples, N processes, resumable")
    p.add_argument("--generator", required=True, help="saved MaskGIT generator folder")
    p.add_argument("--tokenizer", required=True, help="the tokenizer that decodes its tokens (any the app loads)")
    p.add_argument("--teacher", help="MaskGIT-VQGAN teacher, for a stage-1/2 tokenizer that renders through it")
    p.add_argument("--reference", required=True,
                   help="reference .npz: ADM's VIRTUAL_imagenet256_labeled.npz (mu, sigma, arr_0) or ours")
    p.add_argument("--num-images", type=int, default=50_000, help="samples in all (class i mod C); default 50000")
    p.add_argument("--steps", default="8", help="generator sampling step counts, e.g. 8 or 4,8")
    p.add_argument("--guidance", default="4.5", help="classifier-free guidance scales, e.g. 4.5 or 0,4.5")
    p.add_argument("--temperature", type=float, default=1.0, help="the generator's randomize temperature")
    p.add_argument("--decode-steps", type=int, default=None, help="tokenizer decoding steps (default: its own)")
    p.add_argument("--decode-temperature", type=float, default=None, help="tokenizer temperature (default: its own)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per batch on each process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--inception-weights", help="weights-inception-2015-12-05-6726825d.pth (default: torch hub cache)")
    p.add_argument("--no-precision-recall", action="store_true", help="skip precision/recall (keeps no features)")
    p.add_argument("--no-refit-reference", action="store_true",
                   help="skip gfid_our_reference_stats (gFID against our Inception's statistics of the reference's "
                        "arr_0 images: one more 2048-d Frechet distance)")
    p.add_argument("--checkpoint-every", type=int, default=20, help="batches between saved partial statistics")
    p.add_argument("--resume", action="store_true", help="continue from OUT/partial (same settings and process count)")
    p.add_argument("--out", required=True, help="output folder (results.json)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_gen_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("error: --batch-size: must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (UsageError, CheckpointError, ConfigError, MissingWeightsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
