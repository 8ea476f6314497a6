"""Letterboxing: fit any image into the square model input with its aspect kept, and back.

The geometry is a small frozen record so that the fused output maps back to exactly the
original pixel grid: same size, same placement, padding cropped away.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_CV_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST_EXACT,  # INTER_NEAREST is not centred: about 1 px shift back and forth
}


def _cv_flag(interpolation: str, enlarging: bool) -> int:
    if interpolation not in _CV_INTERPOLATION:
        raise ValueError(f"interpolation must be one of {tuple(_CV_INTERPOLATION)}, got {interpolation!r}")
    # INTER_AREA only averages when shrinking; enlarging with it gives blocky nearest-like output.
    if interpolation == "area" and enlarging:
        return cv2.INTER_LINEAR
    return _CV_INTERPOLATION[interpolation]


def _resize(img: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img.copy()
    enlarging = height * width > img.shape[0] * img.shape[1]
    out = cv2.resize(img, (width, height), interpolation=_cv_flag(interpolation, enlarging))
    return out[..., None] if img.ndim == 3 and out.ndim == 2 else out


@dataclass(frozen=True)
class Letterbox:
    """Where an (height, width) image sits inside the size x size model input."""

    height: int  # original image size
    width: int
    size: int  # side of the square model input
    inner_height: int  # resized image inside the square
    inner_width: int
    top: int  # padding above and left of the resized image
    left: int
    interpolation: str = "area"

    @classmethod
    def fit(cls, height: int, width: int, size: int, interpolation: str = "area") -> Letterbox:
        scale = size / max(height, width)
        inner_h = min(size, max(1, round(height * scale)))
        inner_w = min(size, max(1, round(width * scale)))
        return cls(height, width, size, inner_h, inner_w, (size - inner_h) // 2, (size - inner_w) // 2, interpolation)

    def apply(self, img: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(H, W[, C]) at the original size -> (size, size[, C]), padded with `fill`."""
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(f"image is {img.shape[:2]}, this letterbox expects {(self.height, self.width)}")
        inner = _resize(img, self.inner_height, self.inner_width, self.interpolation)
        out = np.full((self.size, self.size, *img.shape[2:]), fill, dtype=img.dtype)
        out[self.top : self.top + self.inner_height, self.left : self.left + self.inner_width] = inner
        return out

    def restore(self, fused_hwc: np.ndarray) -> np.ndarray:
        """(size, size[, C]) model output -> (height, width[, C]): crop the padding, resize back."""
        if fused_hwc.shape[:2] != (self.size, self.size):
            raise ValueError(f"expected a {self.size}x{self.size} image, got {fused_hwc.shape[:2]}")
        inner = fused_hwc[self.top : self.top + self.inner_height, self.left : self.left + self.inner_width]
        return _resize(np.ascontiguousarray(inner), self.height, self.width, self.interpolation)


def letterbox(img: np.ndarray, size: int, interpolation: str = "area") -> tuple[np.ndarray, Letterbox]:
    """Fit an (H, W[, C]) image into size x size, aspect kept, zero padded; return it and its geometry."""
    geometry = Letterbox.fit(img.shape[0], img.shape[1], size, interpolation)
    return geometry.apply(img), geometry
