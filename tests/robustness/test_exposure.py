"""Exposure: loopback by default, no open bind without a password, no path out of the workspace."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.io.workspace import PathRefused, Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_bind_is_loopback(served_app):
    import app

    assert app.parse_args([]).host == "127.0.0.1"
    assert served_app[1].startswith("http://127.0.0.1:")


def test_open_bind_without_auth_refuses_to_start(tiny_model_dir, tally):
    env = {k: v for k, v in os.environ.items() if k != "SFTOK_AUTH"}
    proc = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--model", str(tiny_model_dir)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    tally.input("exposure")
    assert proc.returncode == 2, proc.stderr
    assert "refusing to listen on 0.0.0.0 without a password" in proc.stderr and "--auth" in proc.stderr
    assert "Running on" not in proc.stdout  # it never served


@pytest.mark.parametrize("argv, message", [
    (["--host", "::"], "refusing to listen on :: without a password"),
    (["--host", "192.168.1.20"], "refusing to listen on 192.168.1.20"),
    (["--host", "my-laptop.local"], "refusing to listen on my-laptop.local"),
    (["--host", "0.0.0.0", "--auth", "admin"], "auth: expected USER:PASSWORD"),
    (["--host", "0.0.0.0", "--auth", ":secret"], "auth: expected USER:PASSWORD"),
])
def test_other_open_binds_refuse_before_loading_anything(argv, message, capsys, monkeypatch, tmp_path, tally):
    import app

    monkeypatch.delenv("SFTOK_AUTH", raising=False)
    tally.input("exposure")
    assert app.main([*argv, "--model", str(tmp_path / "never-read")]) == 2
    assert message in capsys.readouterr().err


TRAVERSALS = ["../../etc/passwd", "/etc/passwd", "~/.bashrc", "models/../../outside", "./../outside",
              "models/../../../../../../etc", "..", "/", "//etc//passwd", "link_out/secret.txt", "link_out",
              "models/link_up/secret.txt", "a\x00b", "   ", "", "/proc/self/environ", "%2e%2e/%2e%2e/etc/passwd",
              "..\\..\\etc\\passwd", "models/....//....//etc"]


@pytest.fixture()
def workspace(tmp_path) -> Workspace:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    ws = Workspace.create(tmp_path / "ws")
    (ws.root / "models").mkdir()
    (ws.root / "models" / "ok.txt").write_text("fine")
    (ws.root / "link_out").symlink_to(outside)
    (ws.root / "models" / "link_up").symlink_to(tmp_path)
    return ws


@pytest.mark.parametrize("attempt", TRAVERSALS)
def test_path_traversal_attempts_are_refused(workspace, attempt, tally):
    tally.input("paths")
    with pytest.raises(PathRefused):
        workspace.resolve(attempt)


def test_paths_inside_are_allowed(workspace):
    assert workspace.resolve("models/ok.txt") == workspace.root / "models" / "ok.txt"
    assert workspace.resolve(str(workspace.root / "models" / "../models/ok.txt")) == workspace.root / "models" / "ok.txt"
    assert workspace.resolve("new/file.json", must_exist=False) == workspace.root / "new" / "file.json"


SEGMENTS = st.sampled_from(["..", ".", "models", "ok.txt", "link_out", "link_up", "secret.txt", "", "~", "etc"])


@settings(max_examples=80, deadline=None)
@given(st.booleans(), st.lists(SEGMENTS, min_size=1, max_size=7), st.booleans())
def test_any_resolved_path_lies_inside_the_workspace(tmp_path_factory, absolute, segments, must_exist):
    from tests.robustness.tally import TALLY

    base = tmp_path_factory.getbasetemp() / "prop"
    if not (base / "ws").exists():
        (base / "outside").mkdir(parents=True)
        (base / "outside" / "secret.txt").write_text("secret")
        ws = Workspace.create(base / "ws")
        (ws.root / "models").mkdir()
        (ws.root / "models" / "ok.txt").write_text("fine")
        (ws.root / "link_out").symlink_to(base / "outside")
        (ws.root / "models" / "link_up").symlink_to(base)
    ws = Workspace.create(base / "ws")
    text = ("/" if absolute else "") + "/".join(segments)
    TALLY.input("paths")
    try:
        resolved = ws.resolve(text, must_exist=must_exist)
    except PathRefused:
        return
    real = os.path.realpath(resolved)
    assert real == str(ws.root) or real.startswith(str(ws.root) + os.sep), (text, real)


def test_app_model_choice_cannot_leave_the_workspace(client, tally):
    for attempt in ("../../etc", "/etc", "/", "~", "../", "/proc/self"):
        tally.input("paths (app)")
        with pytest.raises(AppError, match="outside the workspace"):
            client.predict("coffee", attempt, 2, 1.0, 0, "confidence", api_name="/reconstruct_sample")


def test_app_serves_no_file_outside_its_exports_folder(served_app, tally):
    url = served_app[1].rstrip("/")
    secret = Path("/etc/hostname") if Path("/etc/hostname").is_file() else Path("/etc/passwd")
    content = secret.read_text()
    attempts = [f"/gradio_api/file={secret}", f"/file={secret}",
                f"/gradio_api/file={served_app[0].exports_dir}/../../../../../../{secret}",
                f"/gradio_api/file={urllib.parse.quote(str(secret), safe='')}",
                "/gradio_api/file=../../../../../../etc/passwd"]
    for path in attempts:
        tally.input("paths (app)")
        try:
            with urllib.request.urlopen(url + path, timeout=10) as response:
                body = response.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            assert err.code in (400, 403, 404), (path, err.code)
            continue
        assert content.strip() not in body, f"{path} served {secret}"
