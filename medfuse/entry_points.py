"""Console scripts that need optional extras, checked before their modules import them.

`medfuse-train` and `medfuse-export` import torch/onnx at module level; in an install with only
the runtime (`[cpu]`) they would die with a ModuleNotFoundError traceback, even for --help. These
wrappers name the extra to install in one line instead. medfuse-run and medfuse-bench need no
guard: their modules import only the base, and the bench reports what cannot run.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

EXIT_USER_ERROR = 2  # as runtime.errors: a problem with the environment, not a crash

# tool -> (module whose main() runs it, import names it needs, the extras that provide them)
TOOLS = {
    "medfuse-train": ("medfuse.train.cli", ("torch", "torchvision", "pytorch_msssim", "matplotlib"), "train"),
    "medfuse-export": ("medfuse.export.cli", ("torch", "onnx", "onnxscript", "onnxruntime"), "train,export,cpu"),
}


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """The import names that cannot be found (without importing them: torch alone takes seconds)."""
    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a broken install, or a finder that refuses the name
            return True

    return [name for name in names if absent(name)]


def _launch(tool: str) -> None:
    module, needs, extras = TOOLS[tool]
    if sys.argv[1:] == ["--version"]:  # answered without the extras: train's module imports torch (seconds)
        from medfuse.runtime.versions import version_line

        print(version_line(tool))
        sys.exit(0)
    missing = missing_modules(needs)
    if missing:
        print(f"error: {tool} needs {', '.join(missing)}, not installed here: pip install '.[{extras}]' "
              "from the medfuse checkout (PyTorch first, from your wheel source)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    importlib.import_module(module).main()


def train() -> None:
    _launch("medfuse-train")


def export() -> None:
    _launch("medfuse-export")
