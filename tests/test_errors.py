"""User errors reach the terminal as one sentence with exit status 2 and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

APP = """
import typer
from medfuse.runtime.errors import MedfuseError, run_cli
app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
@app.command()
def go(path: str, crash: bool = False):
    if crash:
        raise RuntimeError("a bug, not a user error")
    raise MedfuseError("is not a PNG, DICOM or NIfTI file", path=path)
run_cli(app)
"""


def _run(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MEDFUSE_DEBUG"}
    if debug:
        env["MEDFUSE_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-c", APP, *args], capture_output=True, text=True, env=env)


def test_user_error_is_one_line_exit_2():
    done = _run("scan.txt")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: scan.txt: is not a PNG, DICOM or NIfTI file"
    assert "Traceback" not in done.stderr


def test_debug_variable_shows_the_traceback():
    done = _run("scan.txt", debug=True)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "MedfuseError" in done.stderr


def test_usage_error_exits_2_through_click():
    done = _run()  # missing PATH argument
    assert done.returncode == 2
    assert "Missing argument" in done.stderr


def test_bugs_are_not_disguised_as_user_errors():
    done = _run("x", "--crash")
    assert done.returncode == 1
    assert "RuntimeError" in done.stderr


def test_only_rank_0_of_a_torchrun_job_prints_the_error(tmp_path):
    """Every process of `torchrun --nproc-per-node N medfuse-train` meets the same bad input."""
    env = {k: v for k, v in os.environ.items() if k != "MEDFUSE_DEBUG"}
    argv = ["finetune", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    code = "import sys; from medfuse.train.cli import main; sys.argv = ['medfuse-train', *sys.argv[1:]]; main()"
    said = {}
    for rank in ("0", "1"):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                              env={**env, "RANK": rank})
        assert done.returncode == 2, done.stderr
        said[rank] = done.stderr.strip()
    assert said["0"].startswith("error: ") and "missing" in said["0"] and said["1"] == ""
