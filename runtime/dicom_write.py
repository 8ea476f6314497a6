"""DICOM writers: the fused output as RGB Secondary Capture, one file or a series.

A fused image is a new, derived object: new SOP/Series UIDs, ImageType DERIVED\\SECONDARY,
the patient and study of the CT it came from (so PACS files it with that study), and
SourceImageSequence/ReferencedImageSequence pointing at the source slices.

The fused image lies on the CT's pixel grid, so the CT slice's plane geometry is its own: its
FrameOfReferenceUID, ImagePositionPatient, ImageOrientationPatient and SliceThickness are
copied (from the functional groups of an enhanced CT too). The Secondary Capture IOD has no
Frame of Reference or Image Plane module, so these make it a Standard Extended SOP Class
(PS3.4 B.1.3; dciodvfy warns "not present in standard IOD", no error); they are what lets a
viewer sort the fused series by position, link its scrolling to the CT's and put it in MPR.
Every file is checked with `dciodvfy` in the tests.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from .atomic import atomic_output
from .dicom_frames import frame_count, plane_value, slice_source
from .errors import MedfuseError
from .image import MedicalImage

SOFTWARE = "medfuse"
PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "IssuerOfPatientID")
STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
TYPE2_DEFAULTS = {  # attributes DICOM requires present, even if empty, when no source supplies them
    "PatientName": "",
    "PatientID": "",
    "PatientBirthDate": "",
    "PatientSex": "",
    "StudyDate": "",
    "StudyTime": "",
    "ReferringPhysicianName": "",
    "StudyID": "",
    "AccessionNumber": "",
}


def new_dataset(sop_class: str, sop_instance: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_instance
    return ds


def _stamp(ds: Dataset, when: dt.datetime) -> None:
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ContentDate, ds.ContentTime = date, time


def save(ds: Dataset, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)


def _copy_patient_study(ds: Dataset, source: Dataset | None) -> None:
    for key, value in TYPE2_DEFAULTS.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID = generate_uid()
    if source is None:
        return
    if "SpecificCharacterSet" in source:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    for key in PATIENT_KEYS + STUDY_KEYS:
        if key in source:
            setattr(ds, key, source[key].value)


@dataclass(frozen=True)
class _Source:
    """One source image: its file's header and, for a multi-frame file, which frame (0-based)."""

    ds: Dataset
    frame: int | None = None


def _reference_item(source: _Source) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.ds.SOPClassUID
    item.ReferencedSOPInstanceUID = source.ds.SOPInstanceUID
    if source.frame is not None and frame_count(source.ds) > 1:  # Type 1C: one frame of several (PS3.3 10-3)
        item.ReferencedFrameNumber = source.frame + 1
    return item


def _source_datasets(images: Sequence[MedicalImage | None], index: int) -> list[_Source]:
    found = []
    for image in images:
        source = slice_source(image, index) if image is not None else None
        if source is not None and "SOPInstanceUID" in source[0] and "SOPClassUID" in source[0]:
            found.append(_Source(*source))
    return found


def _set_rgb_pixels(ds: Dataset, rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {rgb.dtype} {rgb.shape}")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()


def _pair_label(modality_pair: str) -> str:
    return modality_pair.upper()  # "ct-mri" -> "CT-MRI"


@dataclass(frozen=True)
class SeriesLabel:
    """How the fused series is listed in a PACS or viewer: routing rules and hanging protocols
    often key on SeriesNumber and SeriesDescription."""

    number: int = 1000  # SeriesNumber (DICOM IS: a 32-bit signed integer)
    description: str | None = None  # SeriesDescription (LO: 64 characters); None: "medfuse <PAIR> fusion"

    def __post_init__(self) -> None:
        if not -(2**31) <= self.number < 2**31:
            raise MedfuseError(f"the series number {self.number} does not fit DICOM's 32-bit SeriesNumber")
        text = self.description
        if text is not None and (len(text) > 64 or "\\" in text or any(ord(c) < 32 for c in text)):
            raise MedfuseError(f"the series description {text!r} is not a DICOM LO value: at most 64 characters, "
                               "no backslash or control characters")

    def text(self, modality_pair: str) -> str:
        return self.description if self.description is not None else f"medfuse {_pair_label(modality_pair)} fusion"


def _series(ds: Dataset, ct: Dataset | None, series_uid: str, modality_pair: str, label: SeriesLabel | None) -> None:
    label = label or SeriesLabel()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "OT", series_uid, label.number
    ds.SeriesDescription = label.text(modality_pair)
    for key in ("BodyPartExamined", "Laterality"):
        if ct is not None and key in ct:
            setattr(ds, key, ct[key].value)
    if "BodyPartExamined" not in ds:
        ds.Laterality = ""  # Type 2C: with the body part unknown it may be paired; empty means "not known"
    ds.ConversionType = "WSD"  # workstation
    ds.SecondaryCaptureDeviceManufacturer = ds.Manufacturer = SOFTWARE


def _axis_letters(direction) -> str:
    """A patient-space (LPS) direction as orientation letters, dominant axis first (PS3.3
    C.7.6.1.1.1): [1, 0, 0] -> 'L', [0, -0.8, 0.6] -> 'AH'."""
    letters = [("L", "R"), ("P", "A"), ("H", "F")]
    ranked = sorted(range(3), key=lambda i: -abs(float(direction[i])))
    return "".join(letters[i][0 if float(direction[i]) > 0 else 1] for i in ranked if abs(float(direction[i])) > 0.25)


def _patient_orientation(ct: Dataset | None) -> list[str] | str:
    """The source's PatientOrientation, else one derived from its ImageOrientationPatient (the
    SC IOD's own way to say where L/R and A/P are; viewers that ignore the plane use it), else empty."""
    if ct is None:
        return ""
    if "PatientOrientation" in ct.ds and ct.ds.PatientOrientation:
        return ct.ds.PatientOrientation
    cosines = plane_value(ct.ds, ct.frame, "ImageOrientationPatient")
    if not cosines or len(cosines) != 6:
        return ""
    return [_axis_letters(cosines[:3]), _axis_letters(cosines[3:])]


def _plane(ds: Dataset, ct: _Source | None) -> None:
    """The CT slice's frame of reference and plane geometry (see the module doc), when complete."""
    if ct is None:
        return
    frame_of_reference = ct.ds.get("FrameOfReferenceUID")
    orientation = plane_value(ct.ds, ct.frame, "ImageOrientationPatient")
    position = plane_value(ct.ds, ct.frame, "ImagePositionPatient")
    if not frame_of_reference or not orientation or not position:
        return
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = ct.ds.get("PositionReferenceIndicator", "")
    ds.ImageOrientationPatient, ds.ImagePositionPatient = orientation, position
    thickness = plane_value(ct.ds, ct.frame, "SliceThickness")
    if thickness not in (None, ""):
        ds.SliceThickness = thickness


def _image(ds: Dataset, ct: _Source | None, instance_number: int, modality_pair: str) -> None:
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = _patient_orientation(ct)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = f"{_pair_label(modality_pair)} image fusion by medfuse"
    ds.BurnedInAnnotation = "NO"
    spacing = plane_value(ct.ds, ct.frame, "PixelSpacing") if ct is not None else None
    if spacing:
        ds.PixelSpacing = spacing  # the fused image is on the CT's pixel grid
    _plane(ds, ct)


def _references(ds: Dataset, ct: _Source | None, others: list[_Source]) -> None:
    sources = ([ct] if ct is not None else []) + others
    if sources:
        ds.SourceImageSequence = DicomSequence([_reference_item(s) for s in sources])
        ds.ReferencedImageSequence = DicomSequence([_reference_item(sources[0])])


def _check_grid(rgb_shape: tuple[int, ...], reference: MedicalImage | None, depth: int | None = None) -> None:
    """The fused pixels must lie on the reference's grid: its plane geometry and references are copied."""
    if reference is None:
        return
    if tuple(rgb_shape[-3:-1]) != tuple(reference.height_width):
        raise MedfuseError(f"the fused image is {rgb_shape[-3]}x{rgb_shape[-2]} but its reference is "
                           f"{reference.height_width[0]}x{reference.height_width[1]}: a fused DICOM image lies "
                           "on its reference's pixel grid", reference.path)
    if depth is not None and reference.is_volume and depth != reference.depth:
        raise MedfuseError(f"the fused volume has {depth} slices but its reference has {reference.depth}", reference.path)


def secondary_capture(
    rgb: np.ndarray,
    reference: MedicalImage | None,
    *,
    series_uid: str,
    instance_number: int = 1,
    slice_index: int = 0,
    extra_sources: Sequence[MedicalImage | None] = (),
    when: dt.datetime | None = None,
    modality_pair: str = "ct-mri",
    series_label: SeriesLabel | None = None,
) -> Dataset:
    """One RGB Secondary Capture dataset derived from `reference` (the CT, or the PET/SPECT of a
    functional pair) and `extra_sources`."""
    ds = new_dataset(SecondaryCaptureImageStorage, generate_uid())
    source = next(iter(_source_datasets([reference], slice_index)), None)
    ct = source.ds if source is not None else None
    _copy_patient_study(ds, ct)
    _stamp(ds, when or dt.datetime.now())
    if ct is None:  # a new study of its own: date it now
        ds.StudyDate, ds.StudyTime, ds.StudyID = ds.ContentDate, ds.ContentTime, "1"
    _series(ds, ct, series_uid, modality_pair, series_label)
    _image(ds, source, instance_number, modality_pair)
    _references(ds, source, _source_datasets(extra_sources, slice_index))
    _set_rgb_pixels(ds, rgb)
    return ds


def write_dicom_secondary_capture(
    path: str | os.PathLike,
    rgb_uint8: np.ndarray,
    reference: MedicalImage | None,
    *,
    extra_sources: Sequence[MedicalImage | None] = (),
    modality_pair: str = "ct-mri",
    series_label: SeriesLabel | None = None,
) -> Path:
    """Write one fused RGB image as a DICOM Secondary Capture file (atomic)."""
    _check_grid(np.shape(rgb_uint8), reference)
    ds = secondary_capture(rgb_uint8, reference, series_uid=generate_uid(), extra_sources=extra_sources,
                           modality_pair=modality_pair, series_label=series_label)
    with atomic_output(path) as tmp:
        save(ds, tmp)
    return Path(path)


def write_dicom_series(
    folder: str | os.PathLike,
    rgb_uint8_volume: np.ndarray,
    reference: MedicalImage | None,
    *,
    extra_sources: Sequence[MedicalImage | None] = (),
    modality_pair: str = "ct-mri",
    series_label: SeriesLabel | None = None,
) -> Path:
    """Write a (D, H, W, 3) fused volume as one Secondary Capture series, NNNN.dcm per slice.

    Slice i references slice i of `reference` (and of each extra source); the whole folder
    appears at once (atomic), replacing an older one of the same name.
    """
    if rgb_uint8_volume.ndim != 4 or rgb_uint8_volume.shape[-1] != 3:
        raise ValueError(f"expected a (D, H, W, 3) volume, got shape {rgb_uint8_volume.shape}")
    _check_grid(rgb_uint8_volume.shape, reference, depth=len(rgb_uint8_volume))
    series_uid, when = generate_uid(), dt.datetime.now()
    study_uid = None
    with atomic_output(folder) as tmp:
        tmp.mkdir()
        for i, rgb in enumerate(rgb_uint8_volume):
            ds = secondary_capture(
                rgb, reference, series_uid=series_uid, instance_number=i + 1, slice_index=i,
                extra_sources=extra_sources, when=when, modality_pair=modality_pair, series_label=series_label,
            )
            study_uid = study_uid or ds.StudyInstanceUID
            ds.StudyInstanceUID = study_uid  # one study even when no source supplies it
            save(ds, tmp / f"{i + 1:04d}.dcm")
    return Path(folder)
