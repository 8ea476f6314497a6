"""What the export steps share: the user's request, the mutable context, the progress reporter."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Protocol

import numpy as np

from medfuse.export.manifest import ArtifactRecord
from medfuse.export.onnx_export import DEFAULT_OPSET
from medfuse.export.tensorrt_build import BatchProfile
from medfuse.runtime.preprocess import PreprocessConfig


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
    threads: int | None = None  # CPU threads of PyTorch and the ONNX Runtime parity runs (None: all cores)

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
    model: object = None  # the torch FusionNet (eval mode)
    model_config: dict = field(default_factory=dict)
    preprocess_config: PreprocessConfig | None = None
    checkpoint_sha256: str = ""
    modality_pair: str = "ct-mri"  # from the checkpoint: how the runtime reads the first image and colours the output
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
