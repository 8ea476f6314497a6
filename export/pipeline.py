"""The steps of `medfuse-export`: validate, load, export each variant, check it, build the engine, publish.

Every artifact is written into a staging folder inside the target and moved into place only
when all of them passed their parity check; `manifest.json` goes last. A failure removes the
staging folder, so the target never holds a half-written export.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Protocol

import numpy as np
import onnx

from medfuse.export import pairs
from medfuse.export.fp16 import convert_fp16
from medfuse.export.int8 import quantize_int8
from medfuse.export.manifest import MANIFEST, ArtifactRecord, build_manifest, write_manifest
from medfuse.export.metadata import build_metadata, with_precision
from medfuse.export.onnx_export import DEFAULT_OPSET, export_model, save_checked
from medfuse.export.parity import compare, require
from medfuse.export.runners import engine_outputs, onnx_outputs, reference_outputs, torch_outputs
from medfuse.export.tensorrt_build import BatchProfile, EngineOptions, build_engine, engine_unavailable
from medfuse.export.triton import write_repository
from medfuse.runtime.errors import MedfuseError

ENGINE_MODES = ("auto", "require", "skip")
PLAN = "model.plan"
PLAN_SIDECAR = "model.plan.json"
ENGINE_TOLERANCE = "fp16"  # see build_plan


def default_timing_cache() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "medfuse" / "tensorrt-timing.cache"


@dataclass(frozen=True)
class ExportRequest:
    checkpoint: Path
    out_dir: Path
    fp16: bool = False  # also write model.fp16.onnx (and build the engine from it)
    int8: bool = False  # also write model.int8.onnx; needs calib_dir
    calib_dir: Path | None = None  # real CT/MRI pairs: int8 calibration and extra parity inputs
    calib_pairs: int = 32  # pairs used to calibrate int8 (spread over the folder)
    parity_pairs: int = 8  # other real pairs compared at export, besides the phantoms
    engine: str = "auto"  # auto: build when a GPU and TensorRT exist; require: error otherwise; skip
    batch: BatchProfile = BatchProfile(1, 4, 32)  # engine profile; its max is Triton's max_batch_size
    triton_repo: Path | None = None
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    hardware_compat: bool = False
    opset: int = DEFAULT_OPSET
    timing_cache: Path = field(default_factory=default_timing_cache)

    @property
    def precisions(self) -> tuple[str, ...]:
        return ("fp32",) + (("fp16",) if self.fp16 else ()) + (("int8",) if self.int8 else ())


class Reporter(Protocol):
    def step(self, text: str) -> ContextManager[None]: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        yield

    def note(self, text: str) -> None:
        pass


@dataclass
class Context:
    """What the steps share: the loaded model, its inputs and reference outputs, what was written."""

    request: ExportRequest
    staging: Path
    model: object = None
    model_config: dict = field(default_factory=dict)
    preprocess_config: object = None
    checkpoint_sha256: str = ""
    metadata: dict = field(default_factory=dict)
    ct: np.ndarray | None = None  # parity inputs [N,3,S,S]
    mri: np.ndarray | None = None
    inputs_text: str = ""
    reference: np.ndarray | None = None  # PyTorch fp32 outputs on ct/mri
    calib_ct: np.ndarray | None = None
    calib_mri: np.ndarray | None = None
    spatial_dynamic: bool = False
    records: list[ArtifactRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> int:
        return self.preprocess_config.input_size


# ------------------------------------------------------------------ one function per ONNX variant
def make_fp32(ctx: Context) -> onnx.ModelProto:
    model, ctx.spatial_dynamic = export_model(ctx.model, ctx.input_size, ctx.request.opset)
    return model


def make_fp16(ctx: Context) -> onnx.ModelProto:
    return convert_fp16(onnx.load(str(ctx.staging / VARIANTS["fp32"].filename)))


def make_int8(ctx: Context) -> onnx.ModelProto:
    return quantize_int8(ctx.staging / VARIANTS["fp32"].filename, ctx.calib_ct, ctx.calib_mri)


HALF_CHECK_SIDE = 64  # centre crop the reference evaluator runs on (~10 s for the full model)


def check_half_arithmetic(ctx: Context, path: Path) -> dict:
    """fp16 parity with real half-precision arithmetic, on a centre crop of the first parity pair.

    ONNX Runtime's CPU provider computes most fp16 nodes in fp32, so its figures prove the fp16
    weights and graph but not the half maths a GPU runs; the reference evaluator does that maths.
    """
    if not ctx.spatial_dynamic and ctx.input_size > HALF_CHECK_SIDE:
        return {"skipped": f"the file has fixed {ctx.input_size}x{ctx.input_size} inputs; the reference "
                           f"evaluator is too slow at that size"}
    side = min(HALF_CHECK_SIDE, ctx.input_size)
    lo = (ctx.input_size - side) // 2
    crop = (slice(0, 1), slice(None), slice(lo, lo + side), slice(lo, lo + side))
    ct, mri = np.ascontiguousarray(ctx.ct[crop]), np.ascontiguousarray(ctx.mri[crop])
    result = compare(torch_outputs(ctx.model, ct, mri), reference_outputs(path, ct, mri), "fp16")
    require(result, f"{path.name} (half-precision arithmetic)")
    return {**result.to_dict(), "inputs": f"{side}x{side} centre crop of 1 pair, ONNX reference evaluator"}


@dataclass(frozen=True)
class Variant:
    filename: str
    make: Callable[[Context], onnx.ModelProto]
    label: str  # progress text
    extra_checks: dict[str, Callable[[Context, Path], dict]] = field(default_factory=dict)  # -> parity[name]


VARIANTS: dict[str, Variant] = {
    "fp32": Variant("model.onnx", make_fp32, "Exporting fp32 ONNX (torch.onnx dynamo)"),
    "fp16": Variant("model.fp16.onnx", make_fp16, "Converting to fp16 ONNX and checking half arithmetic",
                    {"half_arithmetic": check_half_arithmetic}),
    "int8": Variant("model.int8.onnx", make_int8, "Quantising to int8 QDQ ONNX (calibrating)"),
}


def export_variant(ctx: Context, precision: str) -> ArtifactRecord:
    """Make, check and save one ONNX file, then compare it with PyTorch; over tolerance raises."""
    variant = VARIANTS[precision]
    path = save_checked(variant.make(ctx), ctx.staging / variant.filename, with_precision(ctx.metadata, precision))
    result = compare(ctx.reference, onnx_outputs(path, ctx.ct, ctx.mri), precision, ct=ctx.ct, mri=ctx.mri)
    require(result, variant.filename)
    parity = {**result.to_dict(), "inputs": ctx.inputs_text}
    for name, check in variant.extra_checks.items():
        parity[name] = check(ctx, path)
    axes = ["batch", "height", "width"] if ctx.spatial_dynamic else ["batch"]
    return ArtifactRecord.of(path, "onnx", precision, parity, opset=ctx.request.opset, dynamic_axes=axes)


# ------------------------------------------------------------------ validation and loading
def validate(request: ExportRequest) -> list[tuple[Path, Path]]:
    """Every check that needs no model, so bad input fails in a second; returns the real pairs."""
    if request.engine not in ENGINE_MODES:
        raise MedfuseError(f"--engine must be one of {', '.join(ENGINE_MODES)}, got {request.engine!r}")
    if not Path(request.checkpoint).is_file():
        raise MedfuseError("checkpoint not found", request.checkpoint)
    if request.int8 and request.calib_dir is None:
        raise MedfuseError("--int8 needs --calib DIR: real CT/MRI pairs to calibrate the activation ranges")
    if request.calib_pairs < 1 or request.parity_pairs < 0:
        raise MedfuseError("--calib-pairs must be at least 1 and --parity-pairs at least 0")
    if request.engine == "require":
        reason = engine_unavailable()
        if reason:
            raise MedfuseError(f"--engine require: {reason}")
    return pairs.find_pairs(request.calib_dir) if request.calib_dir is not None else []


def make_staging(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise MedfuseError("output path exists and is not a folder", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = out_dir / f".medfuse-export-{secrets.token_hex(4)}"
        staging.mkdir()
    except OSError as err:
        raise MedfuseError(f"cannot write to the output folder ({err.strerror or err})", out_dir) from None
    return staging


def load(ctx: Context, real_pairs: list[tuple[Path, Path]]) -> None:
    from medfuse.train.checkpoint import load_model

    ctx.model, model_cfg, ctx.preprocess_config, ctx.checkpoint_sha256 = load_model(ctx.request.checkpoint)
    ctx.model_config = model_cfg.to_dict()
    ctx.metadata = build_metadata(ctx.model_config, ctx.preprocess_config.to_dict(), ctx.checkpoint_sha256)
    ct, mri = pairs.phantom_arrays(ctx.preprocess_config)
    ctx.inputs_text = f"{len(ct)} phantom pairs"
    if real_pairs:
        calib, parity = pairs.split_pairs(real_pairs, ctx.request.calib_pairs, ctx.request.parity_pairs)
        if ctx.request.int8:
            ctx.calib_ct, ctx.calib_mri = pairs.load_arrays(calib, ctx.preprocess_config)
        if parity:
            real_ct, real_mri = pairs.load_arrays(parity, ctx.preprocess_config)
            ct, mri = np.concatenate([ct, real_ct]), np.concatenate([mri, real_mri])
            ctx.inputs_text += f" + {len(parity)} real pairs from {ctx.request.calib_dir}"
    ctx.ct, ctx.mri = ct, mri
    ctx.reference = torch_outputs(ctx.model, ct, mri)


# ------------------------------------------------------------------ engine, triton, publish
def build_plan(ctx: Context, reporter: Reporter) -> None:
    request = ctx.request
    if request.engine == "skip":
        return
    reason = engine_unavailable()
    if reason:  # "require" was checked in validate(); auto goes on without an engine
        ctx.notes.append(f"engine not built: {reason}")
        return
    precision = "fp16" if request.fp16 else "fp32"
    options = EngineOptions(batch=request.batch, input_size=ctx.input_size, timing_cache=request.timing_cache,
                            version_compatible=request.version_compatible,
                            exclude_lean_runtime=request.exclude_lean_runtime, hardware_compat=request.hardware_compat)
    with reporter.step(f"Building the TensorRT {precision} engine and checking it"):
        info = build_engine(ctx.staging / VARIANTS[precision].filename, ctx.staging / PLAN, options,
                            precision=precision, preprocess_config=ctx.preprocess_config.to_dict(),
                            metadata=with_precision(ctx.metadata, precision))
        out = engine_outputs(ctx.staging / PLAN, info, ctx.ct, ctx.mri, min_batch=request.batch.min)
    # Judged with the fp16 tolerance whatever the engine's precision: an fp32 engine computes
    # convolutions in TF32 by default, whose 10-bit mantissa is fp16's.
    result = require(compare(ctx.reference, out, ENGINE_TOLERANCE, ct=ctx.ct, mri=ctx.mri), PLAN)
    ctx.records.append(ArtifactRecord.of(
        ctx.staging / PLAN, "tensorrt-plan", precision, {**result.to_dict(), "inputs": ctx.inputs_text},
        sidecar=PLAN_SIDECAR, tensorrt_version=info["tensorrt_version"], gpu_name=info["gpu_name"]))


def write_triton(ctx: Context) -> list[Path]:
    plan = ctx.staging / PLAN
    return write_repository(ctx.request.triton_repo, onnx_path=ctx.staging / VARIANTS["fp32"].filename,
                            plan_path=plan if plan.is_file() else None, max_batch=ctx.request.batch.max,
                            input_size=ctx.input_size)


def publish(ctx: Context) -> list[Path]:
    """Move the staged files into the target, drop stale artifacts of an earlier export, manifest last."""
    out = Path(ctx.request.out_dir)
    produced = {p.name for p in ctx.staging.iterdir()}
    known = {v.filename for v in VARIANTS.values()} | {PLAN, PLAN_SIDECAR, MANIFEST}
    for stale in known - produced:
        (out / stale).unlink(missing_ok=True)
    written = []
    for name in sorted(produced, key=_artifact_order):
        os.replace(ctx.staging / name, out / name)
        written.append(out / name)
    manifest = build_manifest(ctx.records, checkpoint_sha256=ctx.checkpoint_sha256, model_config=ctx.model_config,
                              preprocess_config=ctx.preprocess_config.to_dict())
    written.append(write_manifest(out, manifest))
    return written


def _artifact_order(name: str) -> tuple[int, str]:
    order = [v.filename for v in VARIANTS.values()] + [PLAN, PLAN_SIDECAR]
    return (order.index(name) if name in order else len(order), name)


@dataclass(frozen=True)
class ExportResult:
    files: list[Path]  # in the artifacts folder, manifest last
    records: list[ArtifactRecord]
    triton: list[Path]  # model folders written in the Triton repository
    notes: list[str]  # lines for the user (e.g. why no engine was built)


def run_export(request: ExportRequest, reporter: Reporter | None = None) -> ExportResult:
    reporter = reporter or SilentReporter()
    real_pairs = validate(request)
    out_dir = Path(request.out_dir)
    created = not out_dir.exists()
    ctx = Context(request, make_staging(out_dir))
    try:
        with reporter.step("Loading the checkpoint and the parity inputs"):
            load(ctx, real_pairs)
        for precision in request.precisions:
            with reporter.step(VARIANTS[precision].label):
                ctx.records.append(export_variant(ctx, precision))
        build_plan(ctx, reporter)
        triton = write_triton(ctx) if request.triton_repo is not None else []
        files = publish(ctx)
    except BaseException:
        shutil.rmtree(ctx.staging, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(ctx.staging, ignore_errors=True)
    for note in ctx.notes:
        reporter.note(note)
    return ExportResult(files, ctx.records, triton, ctx.notes)
