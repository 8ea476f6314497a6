"""The phantom's DICOM series: valid CT Image (HU via RescaleIntercept) and MR Image objects.

CT and MR of one case share study and FrameOfReferenceUID (they are registered by construction),
and UIDs are derived from the case, so the same call writes the same headers every time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

from .atomic import atomic_output
from .dicom_write import SOFTWARE, new_dataset, save

PHANTOM_SPACING_MM = (0.9, 0.9, 5.0)  # row, column, slice


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
            ds = new_dataset(sop_class, _phantom_uid("image", case, modality, index))
            _phantom_common(ds, modality, case, index, len(volume))
            stored = to_stored(ds, pixels).astype(np.uint16)
            ds.Rows, ds.Columns = stored.shape
            ds.PixelData = stored.tobytes()
            save(ds, tmp / f"{case:02d}{index + 1:03d}.dcm")
    return Path(folder)
