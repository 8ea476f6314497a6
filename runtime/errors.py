"""One exception type for user errors, and the CLI wrapper that prints it as one sentence.

Every command-line entry point runs through `run_cli`: a `MedfuseError` (bad file, bad option,
missing model) becomes one line on stderr and exit status 2, with no traceback. Set
`MEDFUSE_DEBUG=1` to see the traceback anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_USER_ERROR = 2
DEBUG_ENV = "MEDFUSE_DEBUG"


class MedfuseError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "False")


def run_cli(app: Callable[[], object], say_errors: bool = True) -> None:
    """Run a Typer app (built with `pretty_exceptions_enable=False`) as a console script.

    Click handles usage errors, --help and typer.Exit itself (standalone mode); a MedfuseError
    escapes it and is printed here as one line (`say_errors=False`: only the exit status, for
    the other processes of a multi-process run, which hit the same error).
    """
    try:
        app()
    except MedfuseError as err:
        if debug_enabled():
            raise
        if say_errors:
            print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
