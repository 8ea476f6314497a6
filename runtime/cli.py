"""`medfuse-run CT MRI -o OUT`: fuse a pair, two folders of pairs, or two volumes.

This module imports only Typer at import time, so `medfuse-run --help` starts fast; numpy,
OpenCV and the engine libraries load when a command runs. Human messages go to stderr, so
`--json` leaves stdout to one machine-readable JSON document.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from medfuse.runtime.errors import MedfuseError, run_cli
from medfuse.runtime.versions import version_option

app = typer.Typer(pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False,
                  help="Fuse CT and MRI with an exported medfuse model (ONNX Runtime or TensorRT; no torch).")

EXIT_SOME_FAILED = 1


class Backend(str, Enum):
    auto = "auto"
    tensorrt = "tensorrt"
    onnxruntime_cuda = "onnxruntime-cuda"
    onnxruntime_cpu = "onnxruntime-cpu"
    onnxruntime_tensorrt = "onnxruntime-tensorrt"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


CtArg = Annotated[Path, typer.Argument(
    metavar="CT", show_default=False,
    help="CT: an image (PNG/JPEG/TIFF/DICOM/NIfTI), a DICOM series folder, a 3D NIfTI, or a folder of CT images. "
         "With a pet-mri/spect-mri model: the PET/SPECT image (pseudo-colour, or gray PET DICOM).")]
MriArg = Annotated[Path, typer.Argument(metavar="MRI", show_default=False,
                                        help="MRI: the same kind as CT (registered to it).")]
OutOpt = Annotated[Path, typer.Option("--output", "-o", show_default=False,
                                      help="Fused output: .png or .dcm (one pair); a folder (folders of pairs, "
                                           "or a volume as a DICOM series); .nii/.nii.gz (a volume).")]
ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", help="Model folder from medfuse-export (or one .onnx/.plan in it). "
                    "Default: $MEDFUSE_MODEL, else ~/.cache/medfuse/model.")]
BackendOpt = Annotated[Backend, typer.Option(help="auto: TensorRT engine, else ONNX Runtime CUDA, else CPU.")]
PrecisionOpt = Annotated[Precision, typer.Option(
    help="auto: the engine's; ONNX on a GPU fp16, on a CPU int8 (when exported), else fp32.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Pairs (or slices) per engine call.")]
WindowOpt = Annotated[Optional[str], typer.Option(
    "--window", metavar="C,W", help="CT window centre,width in HU (DICOM/NIfTI CT only; 8-bit images are "
                                    "already windowed). Default: the model's.")]
PresetOpt = Annotated[Optional[str], typer.Option("--window-preset", metavar="NAME",
                                                  help="Named CT window: default, brain, subdural, stroke, bone, "
                                                       "soft-tissue.")]
ClaheOpt = Annotated[Optional[bool], typer.Option("--clahe/--no-clahe", help="CLAHE on both inputs. Default: as "
                                                                             "the model was trained.",
                                                  show_default=False)]
SliceOpt = Annotated[Optional[int], typer.Option("--slice", help="Slice of a NIfTI/DICOM-series input fused to a "
                                                                 "2D image (default: the middle one).")]
SideOpt = Annotated[Optional[Path], typer.Option("--side-by-side", metavar="PATH",
                                                 help="Also write a CT | MRI | fused PNG (a folder for folders).")]
MetricsOpt = Annotated[bool, typer.Option("--metrics", help="Fusion quality metrics (EN, SD, SF, AG, MI, SCD, VIF, "
                                                            "Qabf, SSIM, PSNR) of each pair; PET/SPECT "
                                                            "models: on the fused luma, plus ChromaErr; "
                                                            "CT-MRI: plus CTDim (bone darkened).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout (messages go to stderr).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="Threads decoding and writing "
                                                                            "beside the engine (default 2-4).")]
SeriesNumberOpt = Annotated[Optional[int], typer.Option("--series-number", help="SeriesNumber of a DICOM output "
                                                                              "(default 1000).")]
SeriesDescriptionOpt = Annotated[Optional[str], typer.Option(
    "--series-description", help="SeriesDescription of a DICOM output, for PACS routing rules and hanging "
                                 "protocols (default 'medfuse CT-MRI fusion'; at most 64 characters).")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime threads per inference "
                                                                            "(default: the physical cores; leave "
                                                                            "some free beside a scanner's software).")]


def parse_window(window: str | None, preset: str | None) -> tuple[float, float] | None:
    if window and preset:
        raise MedfuseError("give --window or --window-preset, not both")
    if preset:
        from medfuse.runtime.preprocess import window_preset

        return window_preset(preset)
    if not window:
        return None
    from medfuse.runtime.preprocess import check_window

    parts = window.split(",")
    if len(parts) != 2:
        raise MedfuseError(f"--window takes CENTRE,WIDTH in HU (e.g. 40,400), got {window!r}")
    return check_window(parts, "--window")


@app.command()
def run(ct: CtArg, mri: MriArg, output: OutOpt, model: ModelOpt = None, backend: BackendOpt = Backend.auto,
        precision: PrecisionOpt = Precision.auto, batch_size: BatchOpt = 4, window: WindowOpt = None,
        window_preset: PresetOpt = None, clahe: ClaheOpt = None, slice_index: SliceOpt = None,
        side_by_side: SideOpt = None, metrics: MetricsOpt = False, json_output: JsonOpt = False,
        overwrite: OverwriteOpt = False, workers: WorkersOpt = None, threads: ThreadsOpt = None,
        series_number: SeriesNumberOpt = None, series_description: SeriesDescriptionOpt = None,
        version: Annotated[bool, version_option("medfuse-run")] = False) -> None:
    """Fuse CT and MRI into one image, a folder of images, or a volume."""
    from medfuse.runtime.run import Request, execute

    request = Request(ct=ct, mri=mri, output=output, model=model, backend=backend.value,
                      precision=precision.value, batch_size=batch_size,
                      window=parse_window(window, window_preset), clahe=clahe, slice_index=slice_index,
                      side_by_side=side_by_side, metrics=metrics, json_output=json_output,
                      overwrite=overwrite, workers=workers, threads=threads, series_number=series_number,
                      series_description=series_description)
    summary = execute(request)
    if summary.get("counts", {}).get("failed"):
        raise typer.Exit(EXIT_SOME_FAILED)


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
