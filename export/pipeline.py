"""The steps of `medfuse-export`: validate, load, export each variant, build the engine, publish.

Every artifact is written into a staging folder inside the target and moved into place only
when all of them passed their parity check; `manifest.json` goes last. A failure removes the
staging folder, so the target never holds a half-written export.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfuse.export import pairs
from medfuse.export.context import Context, ExportRequest, Reporter, SilentReporter, default_timing_cache
from medfuse.export.manifest import MANIFEST, ArtifactRecord, build_manifest, write_manifest
from medfuse.export.metadata import build_metadata, exported_modality_pair, with_precision
from medfuse.export.onnx_export import MIN_OPSET
from medfuse.export.parity import compare, require
from medfuse.export.runners import engine_outputs, torch_outputs
from medfuse.export.tensorrt_build import EngineOptions, build_engine, engine_unavailable
from medfuse.export.triton import write_repository
from medfuse.export.variants import VARIANTS, export_variant
from medfuse.runtime import pairing
from medfuse.runtime.checksum import sha256_file
from medfuse.runtime.errors import MedfuseError

__all__ = ["ExportRequest", "ExportResult", "default_timing_cache", "run_export"]

ENGINE_MODES = ("auto", "require", "skip")
PLAN = "model.plan"
PLAN_SIDECAR = "model.plan.json"
ENGINE_TOLERANCE = "fp16"  # see build_plan


# ------------------------------------------------------------------ validation and loading
def validate(request: ExportRequest) -> list[tuple[Path, Path]]:
    """Every check that needs no model, so bad input fails in a second; returns the real pairs."""
    if request.engine not in ENGINE_MODES:
        raise MedfuseError(f"--engine must be one of {', '.join(ENGINE_MODES)}, got {request.engine!r}")
    if not Path(request.checkpoint).is_file():
        raise MedfuseError("checkpoint not found", request.checkpoint)
    if request.int8 and request.calib_dir is None:
        raise MedfuseError("--int8 needs --calib DIR: real CT/MRI pairs to calibrate the activation ranges")
    if request.opset < MIN_OPSET:
        raise MedfuseError(f"--opset must be {MIN_OPSET} or newer (the dynamo exporter's minimum), got {request.opset}")
    if request.threads is not None and request.threads < 1:
        raise MedfuseError(f"--threads must be at least 1, got {request.threads}")
    if request.triton_repo is not None and request.batch.min > 1:
        raise MedfuseError(f"--triton-repo with --batch MIN {request.batch.min}: Triton sends batches from 1, "
                           "which the engine's profile must then accept; use --batch 1,OPT,MAX")
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
    from medfuse.train.checkpoint import load_checkpoint, model_from_checkpoint

    if ctx.request.threads:
        import torch

        torch.set_num_threads(ctx.request.threads)
    data = load_checkpoint(ctx.request.checkpoint)
    ctx.model, model_cfg, ctx.preprocess_config = model_from_checkpoint(data, ctx.request.checkpoint)
    ctx.checkpoint_sha256 = sha256_file(ctx.request.checkpoint)
    ctx.modality_pair = exported_modality_pair(data, ctx.request.checkpoint)
    calib_pair = pairing.folder_modality(ctx.request.calib_dir) if real_pairs else ctx.modality_pair
    if calib_pair != ctx.modality_pair:
        raise MedfuseError(f"holds {calib_pair} pairs, but the model fuses {ctx.modality_pair}: calibrate and check "
                           "it on pairs of its own kind", ctx.request.calib_dir)
    ctx.model_config = model_cfg.to_dict()
    ctx.metadata = build_metadata(ctx.model_config, ctx.preprocess_config.to_dict(), ctx.checkpoint_sha256,
                                  ctx.modality_pair)
    ct, mri = pairs.phantom_arrays(ctx.preprocess_config)
    ctx.inputs_text = f"{len(ct)} phantom pairs"
    if real_pairs:
        calib, parity = pairs.split_pairs(real_pairs, ctx.request.calib_pairs, ctx.request.parity_pairs)
        if ctx.request.int8:
            ctx.calib_ct, ctx.calib_mri = pairs.load_arrays(calib, ctx.preprocess_config, ctx.modality_pair)
        if parity:
            real_ct, real_mri = pairs.load_arrays(parity, ctx.preprocess_config, ctx.modality_pair)
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
                              preprocess_config=ctx.preprocess_config.to_dict(), modality_pair=ctx.modality_pair)
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
