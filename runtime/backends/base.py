"""The runner interface every backend implements, and the tensor contract of a medfuse model.

A runner is loaded in two steps, as in Polygraphy: construct it (cheap, no heavy import), then
`activate()` it (opens the session or deserialises the engine). `infer` takes and returns dicts of
numpy arrays; `close()` frees what `activate` took. Use it as a context manager.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medfuse.runtime.errors import MedfuseError

# Tensor name -> channels. Batch, height and width are dynamic (or profile-bound for TensorRT).
MODEL_INPUTS: dict[str, int] = {"ct": 3, "mri": 1}
MODEL_OUTPUTS: dict[str, int] = {"fused": 3}


def _describe(spec: Mapping[str, int]) -> str:
    return ", ".join(f"{name} [B,{ch},H,W]" for name, ch in spec.items())


def _channel_mismatch(shape: Sequence, channels: int) -> bool:
    """True when a declared shape is not rank 4 or declares a channel count other than `channels`.

    A symbolic (str) or unknown (None/-1) channel dimension is accepted: only a concrete wrong
    number proves the file is not a medfuse model.
    """
    if len(shape) != 4:
        return True
    ch = shape[1]
    return isinstance(ch, int) and ch > 0 and ch != channels


def check_io(path: Path, inputs: Mapping[str, Sequence], outputs: Mapping[str, Sequence]) -> None:
    """Raise one MedfuseError when a model's tensors are not those of a medfuse model.

    `inputs` and `outputs` map tensor names to declared shapes as the backend reports them.
    """
    expected = f"inputs {_describe(MODEL_INPUTS)} and output {_describe(MODEL_OUTPUTS)}"
    found = (f"inputs {', '.join(f'{n} {list(s)}' for n, s in inputs.items()) or 'none'} "
             f"and outputs {', '.join(f'{n} {list(s)}' for n, s in outputs.items()) or 'none'}")
    if set(inputs) != set(MODEL_INPUTS) or not set(MODEL_OUTPUTS) <= set(outputs):
        raise MedfuseError(f"not a medfuse fusion model: expected {expected}, found {found}", path)
    for spec, shapes in ((MODEL_INPUTS, inputs), (MODEL_OUTPUTS, outputs)):
        for name, channels in spec.items():
            if _channel_mismatch(shapes[name], channels):
                raise MedfuseError(f"not a medfuse fusion model: expected {expected}, found {found}", path)


class Runner(ABC):
    """One loaded model behind `infer(feeds) -> outputs`; a context manager."""

    name: str = "runner"  # backend name as the CLI spells it

    def __init__(self, path: Path, precision: str):
        self.path = Path(path)
        self.precision = precision
        self.input_names: tuple[str, ...] = tuple(MODEL_INPUTS)
        self.output_names: tuple[str, ...] = tuple(MODEL_OUTPUTS)
        self.metadata: dict[str, str] = {}  # medfuse.* keys: ONNX metadata_props or the plan sidecar
        self.max_batch: int | None = None  # largest batch one infer() call takes (engine profile)
        self.is_active = False

    @abstractmethod
    def activate(self) -> None:
        """Load the model (open the session, deserialise the engine)."""

    @abstractmethod
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: float32 arrays named as `input_names` in, `output_names` out."""

    @abstractmethod
    def close(self) -> None:
        """Free what `activate` took; the runner may be activated again."""

    def describe(self) -> str:
        return f"{self.name} {self.precision} ({self.path.name})"

    def __enter__(self) -> Runner:
        if not self.is_active:
            self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise ValueError(f"missing inputs {sorted(missing)} for {self.describe()}")
        if not self.is_active:
            raise RuntimeError(f"{self.describe()} is not active: call activate() or use it in a with block")
