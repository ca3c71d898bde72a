"""The docs work as written: every page the README and the index link exists, every relative link resolves,
every CLI command quoted in a code block parses (``--help`` of its script and subcommand succeeds), every
config key quoted as an override exists, and the dry runs quoted against configs in this repository pass.

``--help`` runs in-process (``runpy``), deduplicated by script + subcommand, so torch and gradio are
imported once for the whole file.
"""
from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import ConfigError
from trainers.config import TrainConfig, check_fields, parse_override
from trainers.official_schema import OFFICIAL_KEYS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]]*=")


@dataclass(frozen=True)
class Command:
    page: str
    script: str  # "launch_training.py", "app.py", "scripts/x.py" or a module: "-m analysis"
    args: tuple[str, ...]

    @property
    def subcommand(self) -> str | None:
        """The first positional word of ``python -m analysis steps ...``; None for scripts without subcommands."""
        return self.args[0] if self.script == "-m analysis" and self.args else None


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", page.read_text())  # a link inside inline code is an example, not a link
    return [url for url in LINK.findall(text) if not re.match(r"[a-z]+:", url) and not url.startswith("#")]


def command_lines(text: str) -> list[str]:
    """Logical lines of the fenced code blocks: continuations joined, comments dropped."""
    lines: list[str] = []
    for block in FENCE.findall(text):
        pending = ""
        for raw in block.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            lines.append(line.split(" #", 1)[0].strip())
    return lines


def parse_command(page: str, line: str) -> Command | None:
    """A quoted command of ours, wherever it sits in the line (after ``torchrun ...`` or ``accelerate launch ...``)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word in ("launch_training.py", "app.py") or word.startswith("scripts/") and word.endswith(".py"):
            if i == 0 or words[i - 1] == "python" or words[0] in ("torchrun", "accelerate"):
                return Command(page, word, tuple(words[i + 1:]))
        if word == "-m" and i > 0 and words[i - 1] == "python" and i + 1 < len(words):
            if words[i + 1] in ("analysis", "workbench.runs.jobs_cli"):
                return Command(page, f"-m {words[i + 1]}", tuple(words[i + 2:]))
    return None


def quoted_commands() -> list[Command]:
    found = []
    for page in PAGES:
        for line in command_lines(page.read_text()):
            command = parse_command(page.name, line)
            if command is not None:
                found.append(command)
    return found


COMMANDS = quoted_commands()


def help_of(script: str, subcommand: str | None) -> tuple[int, str]:
    """Exit code and output of ``python <script> [subcommand] --help``, in this process."""
    argv = [*([subcommand] if subcommand else []), "--help"]
    out = io.StringIO()
    saved = sys.argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if script.startswith("-m "):
                sys.argv = [script[3:], *argv]
                runpy.run_module(script[3:], run_name="__main__", alter_sys=True)
            else:
                sys.argv = [str(ROOT / script), *argv]
                runpy.run_path(str(ROOT / script), run_name="__main__")
        return 1, out.getvalue()  # argparse's --help exits: returning means the script never parsed it
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        return code, out.getvalue()
    finally:
        sys.argv = saved


def key_error(text: str) -> str | None:
    """Why ``key=value`` is not a training-config override (None when it is one, in our layout or the official)."""
    keys, value = parse_override(text)
    dotted = re.sub(r"\[\d+\]$", "", ".".join(keys))
    if dotted in OFFICIAL_KEYS:  # official-layout overrides apply on top of an official YAML
        return None
    nested: dict = {}
    node = nested
    for part in dotted.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[dotted.split(".")[-1]] = value
    try:
        check_fields(nested, TrainConfig, "")
    except ConfigError as err:
        return str(err)
    return None


def overrides_of(command: Command) -> list[str]:
    if command.script not in ("launch_training.py", "-m workbench.runs.jobs_cli"):
        return []
    return [word for word in command.args if OVERRIDE.match(word)]


# -- links -----------------------------------------------------------------------------------------
def test_the_docs_quote_commands_and_keys():
    """The checks below have something to check (a parser that found nothing would pass them all)."""
    scripts = {c.script for c in COMMANDS}
    assert {"launch_training.py", "app.py", "-m analysis", "-m workbench.runs.jobs_cli"} <= scripts
    assert {c.subcommand for c in COMMANDS if c.script == "-m analysis"} == {"steps", "codebook", "umap", "mi"}
    assert "sfvr.enabled=false" in [o for c in COMMANDS for o in overrides_of(c)]


@pytest.mark.parametrize("index", ["README.md", "docs/index.md"])
def test_every_docs_page_linked_from_the_front_page_and_the_index_exists(index: str):
    page = ROOT / index
    linked = {(page.parent / url.split("#")[0]).resolve() for url in relative_links(page)}
    docs = {p for p in linked if p.parent == (ROOT / "docs").resolve() and p.suffix == ".md"}
    assert len(docs) >= 9, sorted(docs)
    assert [str(p) for p in docs if not p.is_file()] == []
    if index == "docs/index.md":  # the index lists every page
        assert {p.resolve() for p in (ROOT / "docs").glob("*.md")} - {page.resolve()} <= docs


def test_every_relative_link_resolves():
    broken = [f"{page.relative_to(ROOT)}: {url}" for page in PAGES for url in relative_links(page)
              if not (page.parent / url.split("#")[0]).exists()]
    assert broken == []


def test_a_made_up_link_is_caught(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("See [the guide](guide.md), [the web](https://example.org) and `[code](not-a-link.md)`.\n")
    assert relative_links(page) == ["guide.md"]


# -- commands ----------------------------------------------------------------------------------------
def test_every_quoted_command_has_a_working_help():
    failures = []
    for script, subcommand in sorted({(c.script, c.subcommand) for c in COMMANDS}, key=str):
        code, output = help_of(script, subcommand)
        if code != 0 or "usage:" not in output:
            failures.append(f"python {script} {subcommand or ''} --help: exit {code}\n{output[-500:]}")
    assert failures == []


def test_a_made_up_subcommand_fails_its_help():
    code, _ = help_of("-m analysis", "no-such-subcommand")
    assert code == 2


def test_every_quoted_override_is_a_config_key():
    wrong = [f"{c.page}: {o}: {err}" for c in COMMANDS for o in overrides_of(c) if (err := key_error(o))]
    assert wrong == []


def test_a_made_up_key_is_caught():
    assert key_error("sfvr.enabled=false") is None
    assert key_error("training.per_gpu_batch_size=32") is None  # official layout
    assert "sfvr.replace_prob" in key_error("sfvr.replace_probability=0.5")  # the nearest valid name


def test_quoted_dry_runs_against_this_repository_pass(monkeypatch: pytest.MonkeyPatch):
    """A ``--dry-run`` whose ``--config`` lies in this repository runs as written (from the repository root)."""
    monkeypatch.chdir(ROOT)
    runs = {c.args for c in COMMANDS if c.script == "launch_training.py" and "--dry-run" in c.args
            and "--config" in c.args and (ROOT / c.args[c.args.index("--config") + 1]).is_file()}
    assert runs
    launcher = runpy.run_path(str(ROOT / "launch_training.py"))  # in-process: torch is imported once
    for args in sorted(runs):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = launcher["main"](list(args))
        assert code == 0, (args, err.getvalue())


def test_the_front_page_library_example_runs(monkeypatch: pytest.MonkeyPatch):
    """The README's Python block, as written, on the embedded default model."""
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert len(blocks) == 1
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102  (our own documentation)
    ids = scope["info"]["min_encoding_indices"]
    assert tuple(ids.shape) == (2, 1, 64) and tuple(scope["recon"].shape) == (2, 3, 64, 64)
    assert len(scope["steps"]) == 8 and tuple(scope["fast"].shape) == (2, 3, 64, 64)


def test_the_apps_help_points_at_sections_that_exist():
    """Each screen's help names its section of docs/screens.md; the section must be there."""
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", (ROOT / "docs" / "screens.md").read_text(), re.M)}
    quoted = {a for f in (ROOT / "workbench" / "ui").rglob("*.py")
              for a in re.findall(r"docs/screens\.md#([\w-]+)", f.read_text())}
    assert {"reconstruct", "generate", "codebook", "information", "train"} <= quoted
    assert quoted - anchors == set()
