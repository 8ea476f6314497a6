"""`--version` of every medfuse command: medfuse's version and those of the libraries it runs on.

A deployment log or a bug report needs the backend's version as much as medfuse's (an engine
runs only on the TensorRT it was built with; ONNX Runtime changes numerics between releases).
Versions come from the installed distributions' metadata, so nothing heavy is imported: the
line prints as fast as `--help`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata

import typer

# What a user calls a library -> the distributions that provide it (CPU and GPU builds differ).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-lean", "tensorrt-lean-cu12",
                 "tensorrt-lean-cu13"),
    "torch": ("torch",),
    "onnx": ("onnx",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "pydicom": ("pydicom",),
    "nibabel": ("nibabel",),
    "gdcm": ("python-gdcm",),  # pydicom's decoder for JPEG / JPEG-LS / JPEG 2000 DICOM
}
RUNTIME = ("onnxruntime", "tensorrt", "numpy", "opencv", "pydicom", "gdcm", "nibabel")
# The libraries each command's --version names: those its results depend on.
TOOL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "medfuse-run": RUNTIME,
    "medfuse-inspect": RUNTIME,
    "medfuse-train": ("torch", "numpy", "opencv", "pydicom", "gdcm"),
    "medfuse-export": ("torch", "onnx", "onnxruntime", "tensorrt"),
    "medfuse-bench": ("torch", "onnxruntime", "tensorrt"),
}


def installed_version(library: str) -> str | None:
    for name in DISTRIBUTIONS.get(library, (library,)):
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return found if name == library else f"{found} ({name})"
    return None


def version_line(tool: str, libraries: Sequence[str] | None = None) -> str:
    from medfuse import __version__

    libraries = TOOL_LIBRARIES.get(tool, ()) if libraries is None else libraries
    parts = [f"{lib} {installed_version(lib) or 'not installed'}" for lib in libraries]
    return f"{tool} {__version__}" + (f"; {', '.join(parts)}" if parts else "")


def version_callback(tool: str) -> Callable[[bool], None]:
    """A Typer callback for an eager `--version` flag: print the line and exit 0."""

    def show(value: bool) -> None:
        if value:
            typer.echo(version_line(tool))
            raise typer.Exit()

    return show


def version_option(tool: str):
    return typer.Option("--version", is_eager=True, callback=version_callback(tool),
                        help="Print medfuse's version and its libraries' and exit.")
