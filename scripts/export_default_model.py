#!/usr/bin/env python
"""Copy the finished default-model runs into assets/ and write the model card from measured numbers.

assets/default/teacher, assets/default/sftok (stage 3, EMA weights), assets/default/sftok-<other recipe> (the same
stage 3 from the other stage-2 recipe, the app's comparison model), assets/default/generator (with
classes.json: the names of its classes), assets/default/evaluation.json, assets/default/MODEL_CARD.md,
assets/samples/*.png (held-out photos for the app), and the TiTok baseline when its runs are there:
assets/default/titok (first seed), titok_evaluation.json and TITOK_CARD.md (``--titok-only``: that part alone).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from model_card import CardSources, card  # noqa: E402
from model_card.sources import ASSETS, manifest_of  # noqa: E402
from model_card.titok import CARD_NAME as TITOK_CARD, TITOK_FOLDER, titok_card  # noqa: E402
from train_default_model import DATA as DATA_ROOT, OTHER_RECIPE, PHOTO_SET  # noqa: E402

RUNS = ROOT / "workspace" / "default-model"
DATA = DATA_ROOT / PHOTO_SET  # the recipe's dataset
MAX_BYTES = 30 * 1024 * 1024


def write_card(evaluation: dict, sources: CardSources) -> Path:
    """MODEL_CARD.md of the shipped files, written beside them."""
    path = ASSETS / "default" / "MODEL_CARD.md"
    path.write_text(card(evaluation, sources))
    return path


def ship_scaling() -> None:
    """The newest scaling study (scripts/measure_default_scaling.py writes it into the runs) goes beside the card."""
    measured = RUNS / "scaling.json"
    if measured.is_file():
        shutil.copy(measured, ASSETS / "default" / "scaling.json")


def rewrite_card(runs: Path, data: Path) -> int:
    """The card of the shipped files, re-written from their own evaluation and runs with the newest scaling study."""
    ship_scaling()
    evaluation = json.loads((ASSETS / "default" / "evaluation.json").read_text())
    path = write_card(evaluation, CardSources(runs=runs, data=data))
    print(f"re-wrote {path} (runs {runs}, data {data})")
    return 0


def ship_titok(reuse_evaluation: bool = False) -> bool:
    """The TiTok baseline's first seed into assets/default/titok, measured against the shipped SFTok's evaluation,
    with its card; False (nothing shipped) when its runs are not there."""
    from evaluate_default_titok import REPORT, SHIPPED

    if not (RUNS / SHIPPED / "model" / "model.safetensors").is_file():
        print(f"no {RUNS / SHIPPED}: the TiTok baseline is not shipped")
        return False
    target = ASSETS / "default" / TITOK_FOLDER
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(RUNS / SHIPPED / "model", target)
    if not reuse_evaluation:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate_default_titok.py")], cwd=ROOT, check=True)
    shutil.copy(RUNS / REPORT, ASSETS / "default" / REPORT)
    evaluation = json.loads((ASSETS / "default" / "evaluation.json").read_text())
    (ASSETS / "default" / TITOK_CARD).write_text(titok_card(json.loads((RUNS / REPORT).read_text()), evaluation))
    return True


def check_budget() -> None:
    size = sum(p.stat().st_size for p in (ASSETS / "default").rglob("*") if p.is_file())
    print(f"assets/default: {size / 1e6:.1f} MB")
    if size > MAX_BYTES:
        raise SystemExit(f"assets/default is {size / 1e6:.1f} MB, over the 30 MB budget")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reuse-evaluation", action="store_true",
                        help="take workspace/default-model/evaluation.json and the generator report as they are "
                             "(re-write the card without measuring again)")
    parser.add_argument("--card-only", type=Path, metavar="RUNS",
                        help="re-write only MODEL_CARD.md for the files already in assets/default (their evaluation "
                             "there, a new scaling measurement from workspace/default-model), naming the runs folder "
                             "and dataset (--data) they came from; nothing is copied or measured")
    parser.add_argument("--data", type=Path, help="with --card-only: the dataset those runs trained on")
    parser.add_argument("--titok-only", action="store_true",
                        help="ship only the TiTok baseline (its runs in workspace/default-model, measured against the "
                             "shipped SFTok's evaluation.json) and write TITOK_CARD.md")
    args = parser.parse_args(argv)
    if args.card_only:
        return rewrite_card(args.card_only.resolve(), (args.data or DATA).resolve())
    if args.titok_only:
        if not ship_titok(args.reuse_evaluation):
            return 1
        check_budget()
        return 0
    from trainers.data.default_dataset import export_samples
    from trainers.data.labels import write_class_names

    (ASSETS / "default").mkdir(parents=True, exist_ok=True)
    samples = ASSETS / "samples"
    if not samples.is_dir() or not any(samples.glob("*.png")):
        export_samples(samples, n=6, size=256)
    # the other recipe's stage 3 ships too (sftok-vanilla beside an SFVR default): the app offers it as the comparison
    for src, dst in (("teacher", "teacher"), ("stage3", "sftok"), (f"stage3_{OTHER_RECIPE}", f"sftok-{OTHER_RECIPE}"),
                     ("generator", "generator")):
        target = ASSETS / "default" / dst
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(RUNS / src / "model", target)
    labels = json.loads((DATA / "labels.json").read_text())  # {name: class id}, held-out photos included
    trained = set(manifest_of(DATA)["train_sources"])
    names = [name for name, _ in sorted(labels.items(), key=lambda item: item[1]) if name in trained]
    assert [labels[n] for n in names] == list(range(len(names))), "training classes must be 0..n-1"
    write_class_names(ASSETS / "default" / "generator", names)  # training photos only, not the held-out ones
    # the evaluation needs the samples in place (it measures them too)
    if not args.reuse_evaluation:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate_default_model.py")], cwd=ROOT, check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate_default_generator.py"), "--generator",
                        str(ASSETS / "default" / "generator"), "--out", str(ASSETS / "default")], cwd=ROOT, check=True)
    evaluation = json.loads((RUNS / "evaluation.json").read_text())
    shutil.copy(RUNS / "evaluation.json", ASSETS / "default" / "evaluation.json")
    ship_scaling()
    ship_titok(args.reuse_evaluation)  # before the card, which names the TiTok's folder when it ships
    write_card(evaluation, CardSources(runs=RUNS, data=DATA))
    check_budget()
    return 0


if __name__ == "__main__":
    sys.exit(main())
