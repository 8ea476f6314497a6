"""DICOM test helpers: hand-made headers and enhanced files, and dciodvfy (dicom3tools) on a
written file (skipped without it, except in CI which installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def dataset(**attrs):
    """A pydicom Dataset with these attributes (a functional group item, a hand-made header)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


CORONAL = (1, 0, 0, 0, 0, -1)


def enhanced_image(path: Path, *, modality: str = "CT", positions=(10.0, 12.5), orientation=CORONAL,
                   frame_of_reference: str | None = None, thickness: float = 2.5, series_uid: str | None = None) -> Path:
    """An enhanced multi-frame CT or MR (8x8, one frame per position, y in mm) whose plane geometry
    lives only in functional groups (PS3.3 C.7.6.16)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    storage = {"CT": pydicom.uid.EnhancedCTImageStorage, "MR": pydicom.uid.EnhancedMRImageStorage}[modality]
    ds = dataset(Modality=modality, PatientID="P1", StudyInstanceUID=generate_uid(),
                 SeriesInstanceUID=series_uid or generate_uid(), FrameOfReferenceUID=frame_of_reference or generate_uid())
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = storage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 8, len(positions)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = dataset(PixelMeasuresSequence=[dataset(PixelSpacing=[0.5, 0.5], SliceThickness=thickness)],
                     PlaneOrientationSequence=[dataset(ImageOrientationPatient=list(orientation))])
    if modality == "CT":
        shared.PixelValueTransformationSequence = [dataset(RescaleIntercept=-1024, RescaleSlope=1, RescaleType="HU")]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [dataset(PlanePositionSequence=[dataset(ImagePositionPatient=[0, y, 0])])
                                           for y in positions]
    ds.PixelData = np.zeros((len(positions), 8, 8), np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dciodvfy reports for `path` (empty when the file is valid)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dciodvfy is missing in CI; .ci/run installs dicom3tools")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
