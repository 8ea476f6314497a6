"""DICOM writers: RGB Secondary Capture (the fused output) and the phantom CT/MR series.

A fused image is a new, derived object: new SOP/Series UIDs, ImageType DERIVED\\SECONDARY,
the patient and study of the CT it came from (so PACS files it with that study), and
SourceImageSequence/ReferencedImageSequence pointing at the source slices.
Every file is checked with `dciodvfy` in the tests.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from .atomic import atomic_output
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
PHANTOM_SPACING_MM = (0.9, 0.9, 5.0)  # row, column, slice


def _new_dataset(sop_class: str, sop_instance: str) -> Dataset:
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


def _save(ds: Dataset, path: Path) -> None:
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


def _reference_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item


def _source_datasets(images: Sequence[MedicalImage | None], index: int) -> list[Dataset]:
    found = []
    for image in images:
        if image is not None and image.datasets:
            source = image.datasets[min(index, len(image.datasets) - 1)]
            if "SOPInstanceUID" in source and "SOPClassUID" in source:
                found.append(source)
    return found


def _set_rgb_pixels(ds: Dataset, rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {rgb.dtype} {rgb.shape}")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()


def secondary_capture(
    rgb: np.ndarray,
    reference: MedicalImage | None,
    *,
    series_uid: str,
    instance_number: int = 1,
    slice_index: int = 0,
    extra_sources: Sequence[MedicalImage | None] = (),
    when: dt.datetime | None = None,
) -> Dataset:
    """One RGB Secondary Capture dataset derived from `reference` (the CT) and `extra_sources`."""
    ds = _new_dataset(SecondaryCaptureImageStorage, generate_uid())
    sources = _source_datasets([reference, *extra_sources], slice_index)
    ct_source = sources[0] if sources and reference is not None and reference.datasets else None
    _copy_patient_study(ds, ct_source)
    _stamp(ds, when or dt.datetime.now())
    if ct_source is None:  # a new study of its own: date it now
        ds.StudyDate, ds.StudyTime, ds.StudyID = ds.ContentDate, ds.ContentTime, "1"
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "OT", series_uid, 1000
    ds.SeriesDescription = "medfuse CT-MRI fusion"
    for key in ("BodyPartExamined", "Laterality"):
        if ct_source is not None and key in ct_source:
            setattr(ds, key, ct_source[key].value)
    if "BodyPartExamined" not in ds:
        ds.Laterality = ""  # Type 2C: with the body part unknown it may be paired; empty means "not known"
    ds.ConversionType = "WSD"  # workstation
    ds.SecondaryCaptureDeviceManufacturer = SOFTWARE
    ds.Manufacturer = SOFTWARE
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ct_source.PatientOrientation if ct_source and "PatientOrientation" in ct_source else ""
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "CT-MRI image fusion by medfuse"
    ds.BurnedInAnnotation = "NO"
    if ct_source is not None and "PixelSpacing" in ct_source:
        ds.NominalScannedPixelSpacing = ct_source.PixelSpacing
    if sources:
        ds.SourceImageSequence = DicomSequence([_reference_item(s) for s in sources])
        ds.ReferencedImageSequence = DicomSequence([_reference_item(sources[0])])
    _set_rgb_pixels(ds, rgb)
    return ds


def write_dicom_secondary_capture(
    path: str | os.PathLike,
    rgb_uint8: np.ndarray,
    reference: MedicalImage | None,
    *,
    extra_sources: Sequence[MedicalImage | None] = (),
) -> Path:
    """Write one fused RGB image as a DICOM Secondary Capture file (atomic)."""
    ds = secondary_capture(rgb_uint8, reference, series_uid=generate_uid(), extra_sources=extra_sources)
    with atomic_output(path) as tmp:
        _save(ds, tmp)
    return Path(path)


def write_dicom_series(
    folder: str | os.PathLike,
    rgb_uint8_volume: np.ndarray,
    reference: MedicalImage | None,
    *,
    extra_sources: Sequence[MedicalImage | None] = (),
) -> Path:
    """Write a (D, H, W, 3) fused volume as one Secondary Capture series, NNNN.dcm per slice.

    Slice i references slice i of `reference` (and of each extra source); the whole folder
    appears at once (atomic), replacing an older one of the same name.
    """
    if rgb_uint8_volume.ndim != 4 or rgb_uint8_volume.shape[-1] != 3:
        raise ValueError(f"expected a (D, H, W, 3) volume, got shape {rgb_uint8_volume.shape}")
    series_uid, when = generate_uid(), dt.datetime.now()
    study_uid = None
    with atomic_output(folder) as tmp:
        tmp.mkdir()
        for i, rgb in enumerate(rgb_uint8_volume):
            ds = secondary_capture(
                rgb, reference, series_uid=series_uid, instance_number=i + 1, slice_index=i,
                extra_sources=extra_sources, when=when,
            )
            study_uid = study_uid or ds.StudyInstanceUID
            ds.StudyInstanceUID = study_uid  # one study even when no source supplies it
            _save(ds, tmp / f"{i + 1:04d}.dcm")
    return Path(folder)


# ---- phantom series (CT Image and MR Image IODs) -------------------------------------------


def _phantom_uid(*parts: object) -> str:
    # Deterministic UIDs: the same phantom call writes byte-identical headers.
    return generate_uid(entropy_srcs=["medfuse-phantom", *map(str, parts)])


def _phantom_common(ds: Dataset, modality: str, case: int, index: int, depth: int) -> None:
    ds.PatientName, ds.PatientID = f"Phantom^Case{case:02d}", f"MEDFUSE-PHANTOM-{case:02d}"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID = _phantom_uid("study", case)
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20250101", "120000", f"{case}"
    ds.ReferringPhysicianName, ds.AccessionNumber = "", ""
    ds.Modality, ds.SeriesInstanceUID = modality, _phantom_uid("series", case, modality)
    ds.SeriesNumber, ds.PatientPosition = 1 if modality == "CT" else 2, "HFS"
    ds.FrameOfReferenceUID = _phantom_uid("frame", case)  # CT and MR share it: they are registered
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "HEAD"  # unpaired, so Laterality is not required
    ds.Manufacturer = f"{SOFTWARE} phantom"
    ds.InstanceNumber = index + 1
    ds.ContentDate, ds.ContentTime = "20250101", "120000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    row, col, thick = PHANTOM_SPACING_MM
    ds.PixelSpacing, ds.SliceThickness = [row, col], thick
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    z = (index - (depth - 1) / 2.0) * thick
    ds.ImagePositionPatient, ds.SliceLocation = [-115.0, -115.0, z], z
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0


def _phantom_ct(ds: Dataset, hu: np.ndarray) -> np.ndarray:
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.KVP, ds.AcquisitionNumber = 120, 1
    return np.clip(np.round(hu) + 1024, 0, 4095)


def _phantom_mr(ds: Dataset, signal: np.ndarray) -> np.ndarray:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
    ds.MRAcquisitionType, ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "2D", 4000, 100, 1
    ds.AcquisitionNumber = 1
    return np.clip(np.round(signal * 4000.0), 0, 4095)


def write_phantom_series(folder: str | os.PathLike, volume: np.ndarray, *, modality: str, case: int) -> Path:
    """Write a (D, H, W) phantom volume as a CT (HU) or MR series, CCSSS.dcm per slice (atomic)."""
    sop_class, to_stored = {"CT": (CTImageStorage, _phantom_ct), "MR": (MRImageStorage, _phantom_mr)}[modality]
    with atomic_output(folder) as tmp:
        tmp.mkdir()
        for index, pixels in enumerate(volume):
            ds = _new_dataset(sop_class, _phantom_uid("image", case, modality, index))
            _phantom_common(ds, modality, case, index, len(volume))
            stored = to_stored(ds, pixels).astype(np.uint16)
            ds.Rows, ds.Columns = stored.shape
            ds.PixelData = stored.tobytes()
            _save(ds, tmp / f"{case:02d}{index + 1:03d}.dcm")
    return Path(folder)
