"""medfuse as a Python library: load an exported model once, fuse images held in memory.

`medfuse-run` is file in, file out, and loads the model on every call (0.5-0.7 s for the CPU
model). A service beside a scanner, a PACS router or a MONAI Deploy operator already holds the
images and fuses many pairs with one model, so it wants the model loaded once:

    from medfuse.runtime.api import FusionModel

    with FusionModel.open("artifacts/") as model:          # backend chosen as medfuse-run's auto
        fused = model.fuse("ct.dcm", "mri.dcm")            # (H, W, 3) uint8 at the CT's size
        fused = model.fuse(ct_uint8, mri_uint8)            # numpy arrays, like 8-bit PNGs
        fused = model.fuse(ct_hounsfield(hu), mri_array)   # raw HU: the model's CT window applies

Everything `medfuse-run` checks is checked here too (pair geometry, DICOM patient, modalities,
NaN pixels, a damaged ONNX file), raising `MedfuseError` with the same sentence. The library
never prints: notes (e.g. a CLAHE setting that departs from training) go to the `medfuse` logger.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.fuse import Fuser, fuse_volume_images, fused_image
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.preprocess import PreparedPair, PreprocessConfig

if TYPE_CHECKING:
    from medfuse.runtime.backends.base import Runner
    from medfuse.runtime.model_dir import ModelDir
    from medfuse.runtime.selection import Choice

log = logging.getLogger("medfuse")

# A path (any format medfuse-run reads), a MedicalImage, or a numpy array (see `as_image`).
ImageLike = str | os.PathLike | MedicalImage | np.ndarray


# ------------------------------------------------------------------------------ loading
@dataclass
class LoadedModel:
    """An activated runner and what goes with it: why this backend, its preprocessing and pair."""

    choice: Choice  # backend, precision, artifact, reason
    runner: Runner  # activated
    preprocess: PreprocessConfig
    modality_pair: str
    folder: ModelDir


def load_model(model: str | os.PathLike | None = None, backend: str = "auto", precision: str = "auto", *,
               threads: int | None = None, window: tuple[float, float] | None = None, clahe: bool | None = None,
               spin: bool = True, say=log.info, label: str = "the model argument") -> LoadedModel:
    """Find the model folder (`model`, else $MEDFUSE_MODEL, else the default), choose and activate
    a runner, read its preprocessing and modality pair. `spin=False` when other threads work
    beside the engine (folders, volumes); `label` names `model` in messages; the caller closes `runner`."""
    from medfuse.runtime.cli_support import preprocess_for
    from medfuse.runtime.model_dir import modality_pair, open_model_dir, verify_onnx
    from medfuse.runtime.preprocess import check_window
    from medfuse.runtime.selection import choose, make_runner, probe

    window = check_window(window, "window") if window is not None else None  # before the model loads
    folder = open_model_dir(Path(model) if model is not None else None, label=label)
    choice = choose(backend, precision, probe(folder))
    say(f"backend: {choice.describe()}")
    runner = make_runner(choice, folder, spin=spin, threads=threads)
    if runner.path.suffix == ".onnx":  # a plan is checked against its own sidecar when it loads
        verify_onnx(folder, runner.path)
    runner.activate()
    try:
        pair = modality_pair(runner.metadata, folder, runner.path)
        if window is not None and pair != "ct-mri":  # it was ignored without a word
            raise MedfuseError(f"a CT window applies to CT in HU; this {pair} model fuses a {pair.split('-')[0].upper()} "
                               "image, which is scaled by SUV or its own range: leave --window/--window-preset out")
        cfg = preprocess_for(runner, folder, window, clahe, say)
    except BaseException:
        runner.close()
        raise
    if pair != "ct-mri":
        say(f"modality pair: {pair} (the functional image's luma is fused, its colours are kept; a gray one is "
            "first drawn in the 'hot' colour map, scaled to SUV 0-10 when its header allows, else from 0 to its "
            "99.5th percentile)")
    return LoadedModel(choice, runner, cfg, pair, folder)


# ------------------------------------------------------------------------------ inputs
def ct_hounsfield(hu: np.ndarray, spacing: tuple[float, ...] | None = None) -> MedicalImage:
    """A CT held as Hounsfield units (a 2D slice or a (D, H, W) volume): the model's CT window
    (or `window=` of `FusionModel.open`) maps it to [0, 1], as for a CT DICOM file."""
    return _from_array(hu, "CT array (HU)", modality="CT", is_hu=True, spacing=spacing)


def as_image(x: ImageLike, role: str, volume: bool = False) -> MedicalImage:
    """A path, MedicalImage or numpy array as a MedicalImage; `role` names it in errors.

    An array is read as an image file would be: uint8 is an 8-bit display image (a CT already
    windowed, as the Harvard PNGs; /255), (H, W) gray or (H, W, 3) RGB; any other real dtype is
    raw values with no known scale (a CT is stretched min..max, an MRI percentile-normalised, as
    16-bit PNG/TIFF files are). Hounsfield units: wrap the array with `ct_hounsfield`.
    """
    from medfuse.runtime import io

    if isinstance(x, MedicalImage):
        if x.is_volume != volume:
            raise MedfuseError(f"is a {'volume' if x.is_volume else '2D image'}; use "
                               f"{'fuse_volume' if x.is_volume else 'fuse'}", x.path)
        return io.check_finite(x)
    if isinstance(x, np.ndarray):
        return _from_array(x, f"{role} array", volume=volume)
    if isinstance(x, (str, os.PathLike)):
        return io.read_volume(x) if volume else io.read_image(x)
    raise MedfuseError(f"the {role} must be a file path, a MedicalImage or a numpy array, not {type(x).__name__}")


def _from_array(a: np.ndarray, name: str, *, volume: bool | None = None, modality: str | None = None,
                is_hu: bool = False, spacing: tuple[float, ...] | None = None) -> MedicalImage:
    from medfuse.runtime import io

    if not isinstance(a, np.ndarray) or a.dtype.kind not in "uif":
        kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise MedfuseError(f"the {name} must hold real numbers (uint8, integers or floats), not {kind}")
    if isinstance(a, np.ma.MaskedArray):  # numpy's statistics would skip the masked pixels, OpenCV would not
        raise MedfuseError(f"the {name} is a masked array; fill it first (array.filled(background value))")
    is_volume = (a.ndim == 3 and a.shape[-1] != 3) if volume is None else volume  # (H, W, 3) is RGB
    shapes = {True: "(D, H, W)", False: "(H, W) or (H, W, 3)"}
    fits = a.ndim == 3 if is_volume else (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3))
    if not fits or min(a.shape) == 0:
        raise MedfuseError(f"the {name} has shape {a.shape}; expected {shapes[is_volume]}"
                           + ("" if is_volume else " (a volume: use fuse_volume)"))
    img = MedicalImage(pixels=a, path=Path(f"<{name}>"), format="png" if a.dtype == np.uint8 else "tiff",
                       modality=modality, is_hu=is_hu, spacing=spacing, is_volume=is_volume,
                       bit_depth=8 * a.dtype.itemsize if a.dtype.kind in "ui" else None)
    return io.check_finite(img)


# ------------------------------------------------------------------------------ the model
def _check_open(runner) -> None:
    if not runner.is_active:
        raise MedfuseError("this FusionModel is closed; open the model again")


@dataclass
class _SharedFuser(Fuser):
    """A Fuser whose engine calls take turns, so threads can share one model."""

    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, prepared: Sequence[PreparedPair]) -> np.ndarray:
        with self.lock:
            _check_open(self.runner)  # another thread may have closed it meanwhile
            return super().run(prepared)


def _check_batch_size(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise MedfuseError(f"batch_size must be a whole number of at least 1, got {n!r}")


class FusionModel:
    """An exported medfuse model, loaded once; `fuse` / `fuse_batch` / `fuse_volume` return uint8
    RGB at the first image's size, the images `medfuse-run` would write. Close it (or use `with`).

    One instance may be shared by threads: reading and preprocessing run in the caller's thread,
    engine calls one at a time (the TensorRT runner reuses its device buffers; ONNX Runtime
    already uses every core per call)."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 4, workers: int | None = None):
        _check_batch_size(batch_size)
        self._loaded = loaded
        self._fuser = _SharedFuser(loaded.runner, loaded.preprocess, batch_size, loaded.modality_pair)
        self._workers = workers

    @classmethod
    def open(cls, model: str | os.PathLike | None = None, *, backend: str = "auto", precision: str = "auto",
             batch_size: int = 4, threads: int | None = None, window: tuple[float, float] | None = None,
             clahe: bool | None = None, workers: int | None = None) -> FusionModel:
        """Load a model folder that `medfuse-export` wrote (or one .onnx/.plan in it); the
        arguments mean what medfuse-run's options of the same names do. The ONNX Runtime CPU
        threads do not spin-wait between calls, so the process's other threads keep the cores."""
        _check_batch_size(batch_size)  # before the model loads
        return cls(load_model(model, backend, precision, threads=threads, window=window, clahe=clahe,
                              spin=False), batch_size, workers)

    # what was loaded
    @property
    def backend(self) -> str:
        return self._loaded.choice.backend

    @property
    def precision(self) -> str:
        return self._loaded.choice.precision

    @property
    def reason(self) -> str:
        """Why this backend and precision (the line medfuse-run prints)."""
        return self._loaded.choice.describe()

    @property
    def artifact(self) -> Path:
        return self._loaded.runner.path

    @property
    def modality_pair(self) -> str:
        return self._loaded.modality_pair

    @property
    def preprocess(self) -> PreprocessConfig:
        return self._loaded.preprocess

    # fusing
    def fuse(self, ct: ImageLike, mri: ImageLike) -> np.ndarray:
        """One registered 2D pair -> (H, W, 3) uint8. For a PET/SPECT model `ct` is the colour
        functional image, whose colours the result keeps."""
        return self.fuse_batch([(ct, mri)])[0]

    def fuse_batch(self, pairs: Sequence[tuple[ImageLike, ImageLike]]) -> list[np.ndarray]:
        """Many 2D pairs (any sizes), run in engine batches of `batch_size`; one (H, W, 3) uint8 each.
        The first pair that cannot be read or checked raises, naming it; nothing is returned then."""
        self._check_open()
        items = list(pairs)
        prepared = [self._prepare(item, f" #{i}" if len(items) > 1 else "") for i, item in enumerate(items)]
        if not prepared:
            return []
        return [fused_image(p, f) for p, f in zip(prepared, self._fuser.run(prepared))]

    def fuse_volume(self, ct: ImageLike, mri: ImageLike) -> np.ndarray:
        """Two registered volumes (3D NIfTI paths, DICOM series folders, (D, H, W) arrays or volume
        MedicalImages) -> (D, H, W, 3) uint8, slice by slice."""
        self._check_open()
        ct_img, mri_img = as_image(ct, self._first_role(), volume=True), as_image(mri, "MRI", volume=True)
        return fuse_volume_images(self._fuser, ct_img, mri_img, self._workers).fused

    def _prepare(self, item, tag: str) -> PreparedPair:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise MedfuseError(f"fuse_batch takes (ct, mri) pairs; item{tag or ' 0'} is {type(item).__name__}"
                               + (f" of {len(item)}" if isinstance(item, (tuple, list)) else ""))
        ct, mri = item
        return self._fuser.prepare(as_image(ct, self._first_role() + tag), as_image(mri, "MRI" + tag))

    def _first_role(self) -> str:
        return self.modality_pair.split("-")[0].upper()

    # lifetime
    def _check_open(self) -> None:
        _check_open(self._loaded.runner)

    def close(self) -> None:
        """Free the session or engine (after a call in progress ends); later calls raise."""
        with self._fuser.lock:
            self._loaded.runner.close()

    def __enter__(self) -> FusionModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._loaded.runner.is_active else "closed"
        return f"FusionModel({self.artifact}, {self.backend} {self.precision}, {self.modality_pair}, {state})"
