"""Code style is part of the contract: ruff (lint + format) and snakefmt must be clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (pip install .[dev])")
def test_ruff_lint_and_format():
    lint = run("ruff", "check", "src", "tests", "benchmarks")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run("ruff", "format", "--check", "src", "tests", "benchmarks")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_snakefmt():
    proc = run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr
