"""Run a console script's `main()` in this process, as its user would from a shell: argv set, the
exit status as the shell would see it, stdout and stderr captured (through pytest's capsys)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from unittest import mock


def exit_status(main: Callable[[], None], argv: list[str], env: dict[str, str] | None = None) -> int:
    with mock.patch.object(sys, "argv", [str(a) for a in argv]), mock.patch.dict("os.environ", env or {}):
        try:
            main()
        except SystemExit as done:
            return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def run_main(capsys, main: Callable[[], None], argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = exit_status(main, argv, env)
    out = capsys.readouterr()
    return code, out.out, out.err
