"""The console command: user errors are one clear line with exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _givetake(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "givetake.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--data", "/no/such/file.jsonl"], "error: /no/such/file.jsonl: no such file or directory"),
        (["train", "--epochs", "0"], "error: --epochs must be at least 1, got 0"),
        (
            ["evaluate", "--model", "/no/such/run", "--data", "x.jsonl"],
            "error: model directory /no/such/run does not exist",
        ),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str) -> None:
    result = _givetake(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_data_row_through_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"text": "ok", "labels": ["nonsense"]}) + "\n")
    result = _givetake("train", "--data", str(data))
    assert result.returncode == 2
    assert f"error: {data}, line 1: unknown label 'nonsense'; known labels: pitch," in result.stderr


def test_help_lists_commands() -> None:
    result = _givetake("--help")
    assert result.returncode == 0
    for cmd in ("train", "evaluate", "baseline", "models"):
        assert cmd in result.stdout
