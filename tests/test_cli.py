"""The curvlab command: the demo job end to end, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from curvlab.cli import main


def test_demo_writes_summary_and_figure(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "5", "--k", "3"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    top = summary["top_eigenvalues"]
    assert len(top) == 3 and top == sorted(top, reverse=True) and top[0] > 0
    assert summary["lambda_min"] <= top[-1]
    assert summary["gd_threshold_2_over_lr"] == pytest.approx(2 / summary["lr"])
    assert (tmp_path / "spectral_density.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "top eigenvalues" in out and "2/η" in out


def test_quiet_prints_nothing(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "2", "--k", "1", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--lr", "-1"], "--lr"),
        (["demo", "--k", "many"], "--k"),
        (["spin"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, fragment):
    proc = subprocess.run([sys.executable, "-m", "curvlab.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr


def test_unwritable_output_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "curvlab.cli",
            "demo",
            "--out",
            str(blocker / "sub"),
            "--steps",
            "1",
            "--k",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_input_errors_exit_2_and_bugs_show_their_traceback(monkeypatch, capsys):
    from curvlab import cli
    from curvlab.errors import InputError

    def bad_input(args, parser):
        raise InputError("k: expected a positive integer, got 0\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "list", bad_input)
    assert main(["list"]) == 2
    assert capsys.readouterr().err == "curvlab: error: k: expected a positive integer, got 0\n"

    def bug(args, parser):
        raise ValueError("an internal invariant broke")

    monkeypatch.setitem(cli.COMMANDS, "list", bug)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["list"])


def test_library_input_errors_are_one_family_and_keep_the_builtin_types():
    import torch

    import curvlab
    from curvlab.errors import InputError

    with pytest.raises(InputError, match="k:") as info:
        curvlab.eigs(torch.eye(3, dtype=torch.float64), k=0)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputError, match="matvec") as info:
        curvlab.LinearOperator("not callable", 3)
    assert isinstance(info.value, TypeError)
