"""DICOM reading: single files (one image or multi-frame) and series folders.

Pixel values go through pydicom's modality LUT (RescaleSlope/Intercept or a LUT sequence), so a
CT arrives in Hounsfield units without hand-written rescaling. Series slices are ordered by
ImagePositionPatient projected on the slice normal, with InstanceNumber as the fallback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder

from .dicom_frames import (
    POSITION_TOLERANCE_MM,
    distinct_positions,
    file_positions,
    frame_count,
    first_frame,
    frame_positions,
    group_item,
    plane_value,
)
from .errors import MedfuseError
from .image import MedicalImage

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def load_dataset(path: Path, *, force: bool = False) -> Dataset:
    """Parse one DICOM file; a parse failure becomes a MedfuseError naming the file."""
    try:
        ds = pydicom.dcmread(path, force=force)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as err:
        raise MedfuseError(f"is not a readable DICOM file ({err.__class__.__name__}: {err})", path) from err
    forced = force and getattr(ds, "preamble", None) is None
    if forced and not _looks_like_dicom(ds):  # forced parsing turns any bytes into some "elements"
        raise MedfuseError("is not a DICOM file (no DICM marker and no SOP class, modality or image size)", path)
    return ds


def _looks_like_dicom(ds: Dataset) -> bool:
    try:
        return any(key in ds for key in ("SOPClassUID", "Modality", "Rows"))
    except Exception:  # noqa: BLE001 (garbage parsed under force may fail on any access)
        return False


def _has_pixels(ds: Dataset) -> bool:
    return any(key in ds for key in PIXEL_KEYWORDS)


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    if not _has_pixels(ds):
        kind = getattr(ds, "SOPClassUID", None)
        what = f" (SOP class {kind.name})" if kind is not None else ""
        raise MedfuseError(f"is a DICOM file without pixel data{what}, not an image", path)
    try:
        return ds.pixel_array
    except Exception as err:  # pydicom raises many types for undecodable or truncated pixel data
        raise MedfuseError(_decode_problem(ds, err), path) from err


def _decode_problem(ds: Dataset, err: Exception) -> str:
    """One sentence on why pixel data did not decode. pydicom itself decodes uncompressed, RLE and
    deflated data only; JPEG, JPEG-LS and JPEG 2000 need a decoder plugin (GDCM: dicom-codecs)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax and not syntax.is_transfer_syntax:  # a private or unknown UID: is_compressed would raise
        return f"its DICOM pixel data cannot be decoded: {syntax} is not a transfer syntax pydicom knows"
    what = f"its DICOM pixel data ({syntax.name})" if syntax else "its DICOM pixel data"
    if syntax and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            return f"{what} cannot be decoded: pydicom has no decoder for this transfer syntax"
        if not decoder.is_available:
            return f"{what} cannot be decoded: {_missing_decoder(decoder.missing_dependencies)}"
    return f"{what} cannot be decoded: {_one_line(err)}"


def _missing_decoder(missing: list[str]) -> str:
    if any(plugin.startswith("gdcm") for plugin in missing):
        return "no decoder is installed (pip install 'medfuse[dicom-codecs]' adds GDCM)"
    return "no installed decoder supports it; pydicom can use " + "; ".join(missing)


def _one_line(err: Exception) -> str:
    """pydicom lists each plugin's failure on its own indented line: keep them, on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return err.__class__.__name__
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {'; '.join(lines[1:])}"


def _rescale(ds: Dataset, frame: int | None = None) -> Dataset:
    """Where RescaleSlope/Intercept/Type live: the top level, or the Pixel Value Transformation
    functional group of an enhanced file."""
    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        return ds
    return group_item(ds, "PixelValueTransformationSequence", frame) or ds


def _is_hu(ds: Dataset) -> bool:
    lut = _rescale(ds, 0)  # the first frame's when rescale is given per frame only
    has_lut = "RescaleSlope" in lut or "RescaleIntercept" in lut or "ModalityLUTSequence" in lut
    return ds.get("Modality") == "CT" and has_lut and lut.get("RescaleType", "HU") == "HU"


def _invert_monochrome1(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """MONOCHROME1 shows high values dark: invert the stored values against the stored bit range
    (not each image's own min and max, which differ from slice to slice)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if int(ds.get("PixelRepresentation", 0)) else (0, (1 << bits) - 1)
    return (lo + hi) - raw.astype(np.int64)


def _to_values(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored pixels -> float32 values: modality LUT for gray (per frame for enhanced files), RGB as
    it is, a PALETTE COLOR image through its palette (a PET or SPECT exported in its colour map)."""
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        return raw.astype(np.float32)
    if _is_palette(ds):
        return apply_color_lut(raw, ds).astype(np.float32)
    quantitative = _is_hu(ds) or ds.get("Modality") == "PT"  # HU and activity keep their meaning
    if ds.get("PhotometricInterpretation") == "MONOCHROME1" and not quantitative:
        raw = _invert_monochrome1(raw, ds)
    if frame_count(ds) > 1 and _rescale(ds, 0) is not ds:  # enhanced: each frame through its own group's LUT
        return np.stack([apply_modality_lut(frame, _rescale(ds, i)) for i, frame in enumerate(raw)]).astype(np.float32)
    return apply_modality_lut(raw, _rescale(ds, 0)).astype(np.float32)  # frame 0: a one-frame enhanced file's


def _is_palette(ds: Dataset) -> bool:
    return ds.get("PhotometricInterpretation") == "PALETTE COLOR"


def _bit_depth(ds: Dataset) -> int | None:
    """Bits of a sample as the pixels hold them: a palette image's are its palette entries'."""
    if _is_palette(ds) and "RedPaletteColorLookupTableDescriptor" in ds:
        return int(ds.RedPaletteColorLookupTableDescriptor[2])
    return int(ds.get("BitsStored", ds.get("BitsAllocated", 0))) or None


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """PixelSpacing (an enhanced file's first frame's, from its functional groups), else the
    detector's ImagerPixelSpacing (projection images)."""
    value = plane_value(ds, first_frame(ds), "PixelSpacing") or ds.get("ImagerPixelSpacing")
    return tuple(float(v) for v in value) if value else None


def _image(path: Path, ds: Dataset, pixels: np.ndarray, datasets: list[Dataset], **extra) -> MedicalImage:
    return MedicalImage(
        pixels=pixels,
        path=path,
        format="dicom",
        modality=ds.get("Modality"),
        is_hu=_is_hu(ds),
        bit_depth=_bit_depth(ds),
        datasets=datasets,
        **extra,
    )


def read_dicom_file(path: Path, *, slice_index: int | None = None, volume: bool = False) -> MedicalImage:
    """One DICOM file: a 2D image, or for a multi-frame file one frame (or all with volume=True)."""
    return _file_image(path, load_dataset(path, force=path.suffix.lower() == ".dcm"), slice_index, volume)


def read_dicom_stack(path: Path) -> MedicalImage:
    """One DICOM file as stored: every frame of a multi-frame file (a volume), else its 2D image."""
    ds = load_dataset(path, force=path.suffix.lower() == ".dcm")
    return _file_image(path, ds, None, frame_count(ds) > 1)


def _file_image(path: Path, ds: Dataset, slice_index: int | None, volume: bool) -> MedicalImage:
    values = _to_values(_decode(ds, path), ds)
    spacing = _pixel_spacing(ds)
    if frame_count(ds) == 1:
        if volume:
            raise MedfuseError("is a single 2D DICOM image, not a volume; give the series folder instead", path)
        if slice_index not in (None, 0):
            raise MedfuseError(f"is a single 2D DICOM image; it has no slice {slice_index}", path)
        return _image(path, ds, values, [ds], spacing=spacing)
    if volume:
        step = _frame_spacing(ds)
        return _image(path, ds, values, [ds], spacing=(step, *spacing) if spacing else None, is_volume=True)
    index = _check_index(path, slice_index, len(values))
    return _image(path, ds, values[index], [ds], spacing=spacing, slice_index=index)


def _frame_spacing(ds: Dataset) -> float:
    """Distance between the frames of a multi-frame volume: from the positions of neighbouring
    frames, else SpacingBetweenSlices, else SliceThickness (functional groups or top level), else 1."""
    positions = frame_positions(ds) or []
    steps = [abs(b - a) for a, b in zip(positions, positions[1:]) if a is not None and b is not None]
    steps = [step for step in steps if step > POSITION_TOLERANCE_MM]
    if steps:
        return float(np.median(steps))
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        value = plane_value(ds, 0, key)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def _check_index(path: Path, slice_index: int | None, depth: int) -> int:
    index = depth // 2 if slice_index is None else slice_index
    if not 0 <= index < depth:
        raise MedfuseError(f"slice {index} is out of range; it has {depth} slices (0..{depth - 1})", path)
    return index


# ---- series folders -----------------------------------------------------------------------


def _series_files(folder: Path) -> list[Dataset]:
    datasets = []
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = load_dataset(file, force=file.suffix.lower() == ".dcm")
        except MedfuseError:
            continue  # notes, thumbnails and other files beside the slices are not slices
        if _has_pixels(ds):
            ds.filename = str(file)
            datasets.append(ds)
    if not datasets:
        raise MedfuseError("contains no DICOM image files (an empty or non-DICOM series folder)", folder)
    return datasets


def _check_one_series(folder: Path, datasets: list[Dataset]) -> None:
    series = {ds.get("SeriesInstanceUID") for ds in datasets}
    if len(series) > 1:
        raise MedfuseError(f"holds {len(series)} DICOM series; put one series per folder", folder)
    sizes = {(ds.get("Rows"), ds.get("Columns")) for ds in datasets}
    if len(sizes) > 1:
        raise MedfuseError(f"holds slices of different sizes {sorted(sizes)}; one series has one size", folder)


def _slice_positions(datasets: list[Dataset]) -> list[float] | None:
    """Each slice's position along the slice normal, or None when one lacks it or two share one."""
    positions = file_positions(datasets)
    if positions is None or None in positions or distinct_positions(positions) < len(positions):
        return None
    return positions


def _order(datasets: list[Dataset]) -> tuple[list[Dataset], float | None]:
    """Datasets in slice order, and the slice spacing when positions give it."""
    positions = _slice_positions(datasets)
    if positions is not None:
        order = np.argsort(positions)
        spacing = float(np.median(np.diff(np.sort(positions)))) if len(positions) > 1 else None
        return [datasets[i] for i in order], spacing
    ordered = sorted(datasets, key=lambda ds: (int(ds.get("InstanceNumber", 0) or 0), ds.filename))
    return ordered, None


def read_dicom_series(folder: Path) -> MedicalImage:
    """A folder holding one DICOM series -> a (D, H, W) volume in slice order."""
    datasets = _series_files(folder)
    _check_one_series(folder, datasets)
    datasets, slice_spacing = _order(datasets)
    first = datasets[0]
    if slice_spacing is None:
        slice_spacing = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 0)) or 0) or None
    pixels = np.stack([_to_values(_decode(ds, Path(ds.filename)), ds) for ds in datasets])
    row_col = _pixel_spacing(first)
    spacing = (slice_spacing or 1.0, *row_col) if row_col else None
    return _image(folder, first, pixels, datasets, spacing=spacing, is_volume=True)


def read_dicom_series_slice(folder: Path, slice_index: int | None) -> MedicalImage:
    volume = read_dicom_series(folder)
    return volume.slice(_check_index(folder, slice_index, volume.depth))
