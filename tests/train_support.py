"""Helpers for the training tests."""

from __future__ import annotations

from typer.testing import CliRunner

from medfuse.train import cli


def invoke_train(*args) -> str:
    """Run `medfuse-train ARGS` in-process; its output, or an AssertionError carrying it on a non-zero exit."""
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.output}") from result.exception
    return result.output
