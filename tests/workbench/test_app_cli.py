"""``python app.py``: safe binding, auth parsing and the missing-default-model message."""
from __future__ import annotations

import pytest

import app
from workbench.ui.app import ServeOptions, UnsafeBind, is_loopback, parse_auth


def test_non_loopback_without_auth_refuses_to_start(capsys, tiny_model_dir):
    assert app.main(["--host", "0.0.0.0", "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without a password" in err and "--auth" in err


def test_bad_auth_format_is_named(capsys, tiny_model_dir):
    assert app.main(["--auth", "nocolon", "--model", str(tiny_model_dir)]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_missing_default_model_says_how_to_build_it(tmp_path, capsys):
    assert app.main(["--model", str(tmp_path / "absent"), "--workspace", str(tmp_path / "ws")]) == 1
    err = capsys.readouterr().err
    assert f"The default model folder {tmp_path / 'absent'} is missing" in err and "make default-model" in err
    assert app.parse_args([]).model.endswith("assets/default/sftok")


def test_the_comparison_model_goes_with_the_embedded_default(tmp_path):
    from workbench.services.model_registry import DEFAULT_COMPARISON_DIR, DEFAULT_MODEL_DIR

    assert app.comparison_dir(None, DEFAULT_MODEL_DIR) == DEFAULT_COMPARISON_DIR
    assert app.comparison_dir(None, tmp_path / "my-model") is None  # another model: its own twin is not known
    assert app.comparison_dir(str(tmp_path / "twin"), tmp_path / "my-model") == tmp_path / "twin"
    assert app.comparison_dir("none", DEFAULT_MODEL_DIR) is None


def test_the_embedded_titok_goes_with_the_teacher_it_was_trained_against(tmp_path):
    from workbench.services.model_registry import DEFAULT_TEACHER_DIR, DEFAULT_TITOK_DIR

    assert app.titok_dir(DEFAULT_TEACHER_DIR) == DEFAULT_TITOK_DIR
    assert app.titok_dir(tmp_path / "other-teacher") is None  # its codes would be rendered by the wrong teacher


def test_auth_from_environment(monkeypatch):
    monkeypatch.setenv("SFTOK_AUTH", "ann:secret")
    assert app.parse_args([]).auth == "ann:secret"
    assert parse_auth("ann:se:cret") == ("ann", "se:cret")


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback
    if loopback:
        ServeOptions(host).check()
    else:
        with pytest.raises(UnsafeBind):
            ServeOptions(host).check()
        ServeOptions(host, auth=("a", "b")).check()



def test_second_app_on_a_held_workspace_gets_a_clear_message(tmp_path, capsys, tiny_model_dir):
    import subprocess
    import sys

    from tests.workbench.conftest import REPO_ROOT

    holder = subprocess.Popen(  # another process owns the workspace database, as a running app would
        [sys.executable, "-c", "import sys, time; from workbench.runs.store import Store; s = Store(sys.argv[1]); "
         "print('held', flush=True); time.sleep(120)", str(tmp_path / "ws")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert app.main(["--model", str(tiny_model_dir), "--workspace", str(tmp_path / "ws")]) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "held by another process" in err and "Traceback" not in err
