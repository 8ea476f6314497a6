"""A functional image (PET, SPECT) as the RGB pseudo-colour image whose luma the network fuses.

- RGB files (the usual PET/SPECT pseudo-colour PNG, an RGB DICOM capture) are used as they are.
- Gray images are a tracer map without colour. They are scaled to [0, 1] and drawn with the
  `hot` colour map, whose luma rises with the value, so the network still sees the activity
  order, and the output gets a colour scale a reader knows:
  - PET DICOM (Modality PT) is read through the modality LUT (RescaleSlope/Intercept: Bq/ml
    or counts). When the header has what SUV needs (Units BQML, PatientWeight, the injected dose,
    its half-life and start time, the series time), the values become body-weight SUV and the
    fixed window 0..SUV_DISPLAY_MAX is used, so one colour means one SUV in every study;
    Units GML is SUV already. Otherwise (counts, missing fields) the image is scaled from 0 to
    its 99.5th percentile, so a few hot pixels set no scale.
  - 8-bit gray files are already display-scaled: value / 255.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np

from medfuse.runtime.color import colorize
from medfuse.runtime.image import MedicalImage
from medfuse.runtime.preprocess import normalize_mri, percentile_range, scale_to_unit

GRAY_COLORMAP = "hot"
SUV_DISPLAY_MAX = 10.0  # SUVbw at full scale; brain FDG grey matter sits around 5-10
PERCENTILE_HIGH = 99.5


def _seconds(tm: object) -> float | None:
    """A DICOM TM (HHMMSS.frac) as seconds after midnight."""
    text = str(tm or "").strip()
    if len(text) < 6:
        return None
    try:
        return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])
    except ValueError:
        return None


def _date_seconds(da: object) -> float | None:
    """A DICOM DA (YYYYMMDD) as seconds since 0001-01-01, for differences of dates."""
    text = str(da or "").strip()[:8]
    try:
        return (dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) - dt.date(1, 1, 1)).total_seconds()
    except ValueError:
        return None


def _elapsed(scan_date: object, scan_time: object, info) -> float | None:
    """Seconds from the injection to the scan time the activities refer to, or None when unknown.

    With dates on both sides (RadiopharmaceuticalStartDateTime, the series' date) the difference
    is exact. With times alone a scan up to 12 h "before" the injection is a scan after midnight
    of an evening injection; a scan a little before it means the two clocks disagree (injector and
    scanner), and no SUV is better than one off by a day's decay."""
    start = _seconds(scan_time)
    stamp = str(info.get("RadiopharmaceuticalStartDateTime") or "").strip()
    injected_day = _date_seconds(stamp[:8]) if len(stamp) >= 14 else None
    injected = _seconds(stamp[8:]) if injected_day is not None else _seconds(info.get("RadiopharmaceuticalStartTime"))
    if start is None or injected is None:
        return None
    scan_day = _date_seconds(scan_date)
    if injected_day is not None and scan_day is not None:
        elapsed = (scan_day + start) - (injected_day + injected)
        return elapsed if elapsed >= 0 else None
    elapsed = start - injected
    if elapsed < 0:
        elapsed = elapsed + 86400 if elapsed < -43200 else None
    return elapsed


def suv_factor(ds) -> float | None:
    """Multiplier from Bq/ml to body-weight SUV (g/ml), or None when the header lacks a field."""
    units = str(ds.get("Units", "")).upper()
    if units == "GML":
        return 1.0
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if units != "BQML" or not seq or not ds.get("PatientWeight"):
        return None
    info = seq[0]
    dose, half_life = info.get("RadionuclideTotalDose"), info.get("RadionuclideHalfLife")
    if not dose or not half_life:
        return None
    # The dose is decayed to the time the pixel activities refer to: the scan start (START), each
    # image's acquisition (NONE: not decay corrected), or the injection itself (ADMIN: no decay).
    correction = str(ds.get("DecayCorrection", "START")).upper()
    decay = 1.0
    if correction in ("START", "NONE"):
        if correction == "START":
            date, when = ds.get("SeriesDate"), ds.get("SeriesTime")
        else:
            date = ds.get("AcquisitionDate", ds.get("SeriesDate"))
            when = ds.get("AcquisitionTime", ds.get("SeriesTime"))
        elapsed = _elapsed(date, when, info)
        if elapsed is None:
            return None
        decay = 2.0 ** (-elapsed / float(half_life))
    elif correction != "ADMIN":
        return None  # an unknown convention: counts, not a guessed SUV
    return float(ds.PatientWeight) * 1000.0 / (float(dose) * decay)


def _scaling(img: MedicalImage) -> tuple[str, float | None]:
    """How a gray functional image is scaled: ('suv', factor), ('8-bit', None) or ('percentile', None)."""
    ds = img.datasets[0] if img.datasets else None
    factor = suv_factor(ds) if ds is not None and img.modality == "PT" else None
    if factor is not None:
        return "suv", factor
    if img.bit_depth == 8 and img.format != "dicom":
        return "8-bit", None
    return "percentile", None


def activity_to_unit(img: MedicalImage) -> tuple[np.ndarray, str]:
    """A gray functional image -> [0, 1] and how it was scaled ('suv', '8-bit' or 'percentile';
    percentile over the whole volume when the image is a slice that carries its volume's range)."""
    pixels = np.asarray(img.pixels, np.float32)
    how, factor = _scaling(img)
    if how == "suv":
        return np.clip(pixels * np.float32(factor / SUV_DISPLAY_MAX), 0.0, 1.0), how
    if how == "8-bit":
        return np.clip(pixels / np.float32(255.0), 0.0, 1.0), how
    if img.value_range is not None:
        return scale_to_unit(pixels, *img.value_range), how
    return normalize_mri(np.maximum(pixels, 0.0), 0.0, PERCENTILE_HIGH), how


def with_volume_range(volume: MedicalImage) -> MedicalImage:
    """A gray functional volume scaled by percentile (no SUV) gets one range for all its slices,
    the whole volume's (0 to its 99.5th percentile): per slice, one activity took another colour
    on every slice. SUV and 8-bit scalings are the same on every slice already."""
    if not volume.is_volume or volume.pixels.ndim != 3 or _scaling(volume)[0] != "percentile":
        return volume
    lo, hi = percentile_range(np.maximum(volume.pixels, 0.0), 0.0, PERCENTILE_HIGH)
    return replace(volume, value_range=(float(lo), float(hi)))


def functional_rgb(img: MedicalImage) -> np.ndarray:
    """The functional image as RGB float32 (H, W, 3) in [0, 1]: its own colours, or gray drawn in GRAY_COLORMAP."""
    if img.is_rgb:
        # 8/16-bit integers by their range; 32 bits are float samples (TIFF), already in [0, 1]
        scale = {None: 255.0, 8: 255.0, 32: 1.0}.get(img.bit_depth, float(2 ** (img.bit_depth or 8) - 1))
        return np.clip(img.pixels / np.float32(scale), 0.0, 1.0)
    return colorize(activity_to_unit(img)[0], GRAY_COLORMAP)
