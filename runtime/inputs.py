"""What `medfuse-run CT MRI -o OUT` was given: a pair, two folders of pairs, or two volumes.

The output name decides between a 2D image and a volume, since a NIfTI file or a DICOM series
can be either (one slice of it, or all of it):

| CT, MRI            | OUT ends .png/.dcm   | OUT ends .nii(.gz)  | OUT is a folder            |
| files              | pair (NIfTI: a slice) | volume -> NIfTI     | error (NIfTI -> DICOM series) |
| DICOM series dirs  | pair (one slice)     | volume -> NIfTI     | volume -> DICOM series     |
| other folders      | error                | error               | folder of pairs, by name   |

In a folder of pairs, two NIfTI files are fused whole into a NIfTI of the same name (a volume in,
a volume out); every other pair gives a PNG.

A folder is a DICOM series when it holds only DICOM files (no subfolders), at least two, sharing
one SeriesInstanceUID. Folders of pairs are matched by relative path without suffix, so
`CT/01/01001.dcm` pairs with `MRI/01/01001.dcm` and `CT/a.png` with `MRI/a.jpg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.pairing import file_stem, image_suffix, is_index_file

IMAGE_OUTPUTS = (".png", ".dcm")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
MODES = ("pair", "folder", "volume")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def output_kind(out: Path) -> str:
    """'image', 'nifti' or 'folder' from the output name."""
    name = out.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if out.suffix.lower() in IMAGE_OUTPUTS:
        return "image"
    if out.suffix and not out.is_dir():
        raise MedfuseError(f"unknown output type {out.suffix!r}: use .png or .dcm for an image, .nii or .nii.gz "
                           "for a volume, or a folder name", out)
    return "folder"


def _visible_files(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and not is_index_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_series(folder: Path) -> bool:
    """Only DICOM files, at least two, no subfolders, one SeriesInstanceUID."""
    if any(p.is_dir() for p in folder.iterdir() if not p.name.startswith(".")):
        return False
    files = _visible_files(folder, recursive=False)
    if len(files) < 2 or not all(_is_dicom_file(p) for p in files):
        return False
    import pydicom

    uids = set()
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # pydicom raises several types for damaged files; such a folder is no series
            return False
        uids.add(str(ds.get("SeriesInstanceUID", "")))
        if len(uids) > 1 or "" in uids:  # a folder of many series is a folder of pairs: stop reading
            return False
    return True


def detect_mode(ct: Path, mri: Path, out: Path) -> str:
    """'pair', 'folder' or 'volume' by the table in the module doc; a MedfuseError otherwise."""
    for path in (ct, mri):
        if not path.exists():
            raise MedfuseError("no such file or folder", path)
    kind = output_kind(out)
    if ct.is_dir() != mri.is_dir():
        raise MedfuseError(f"CT {ct} and MRI {mri} must both be files or both be folders")
    if ct.is_dir():
        series = is_dicom_series(ct) and is_dicom_series(mri)
        if kind == "image":
            if not series:
                raise MedfuseError("two folders of pairs give a folder: name an output folder, not an image file", out)
            return "pair"
        if kind == "nifti" and not series:
            raise MedfuseError(f"a NIfTI output needs two volumes; {ct} and {mri} are not single DICOM series", out)
        return "volume" if series else "folder"
    if kind == "image" and out.suffix.lower() == ".dcm" and is_nifti(ct):
        # The DICOM writer takes patient, study and plane from the CT: a NIfTI has none of them, and
        # its voxel order is not DICOM's row/column order (the same reason as for a series below).
        raise MedfuseError("a fused image of a NIfTI CT cannot be written as DICOM (no patient, study or plane "
                           "to give it, and its voxel order is not DICOM's): name a .png output", out)
    if kind == "image":
        return "pair"
    if kind == "folder" and is_nifti(ct) and is_nifti(mri):
        # NIfTI voxel axes are not DICOM's patient axes: written slice by slice the series came out
        # transposed (and, for RAS data, mirrored left-right), with no patient identity or geometry.
        raise MedfuseError("a NIfTI pair cannot be written as a DICOM series (its voxel order is not DICOM's "
                           "patient orientation; no reorientation is done): name a .nii or .nii.gz output", out)
    if kind == "nifti":
        return "volume"
    raise MedfuseError("the fused image needs a name ending in .png or .dcm", out)


def pair_key(rel: Path) -> str:
    """Relative path without its image suffix (.nii.gz counts as one; a UID-named file keeps its digits)."""
    return str(rel.with_name(file_stem(rel)))


@dataclass(frozen=True)
class PairJob:
    name: str  # the shared key, e.g. "01/01001"
    ct: Path
    mri: Path
    output: Path


@dataclass(frozen=True)
class Matching:
    jobs: list[PairJob]
    unpaired: list[Path]  # files present on one side only


def _keyed(folder: Path) -> dict[str, Path]:
    """Files of a folder by pair key; two files with one key (a.png and a.jpg) are ambiguous."""
    out: dict[str, Path] = {}
    for path in _visible_files(folder, recursive=True):
        key = pair_key(path.relative_to(folder))
        if key in out:
            raise MedfuseError(f"{out[key].name} and {path.name} have the same name without suffix, so which one "
                               "pairs is ambiguous; keep one", path.parent)
        out[key] = path
    return out


def _output_suffix(ct: Path, mri: Path, default: str) -> str:
    """A NIfTI pair is a volume pair: its fused volume keeps the CT's NIfTI suffix."""
    return image_suffix(ct) if is_nifti(ct) and is_nifti(mri) else default


def match_folders(ct_dir: Path, mri_dir: Path, out_dir: Path, suffix: str = ".png") -> Matching:
    """Pairs by relative path without suffix; a MedfuseError when no name is shared."""
    ct, mri = _keyed(ct_dir), _keyed(mri_dir)
    shared = sorted(set(ct) & set(mri))
    if not shared:
        raise MedfuseError(f"CT folder {ct_dir} ({len(ct)} files) and MRI folder {mri_dir} ({len(mri)} files) "
                           "share no file name, so there is no pair to fuse")
    jobs = [PairJob(key, ct[key], mri[key], out_dir / f"{key}{_output_suffix(ct[key], mri[key], suffix)}")
            for key in shared]
    unpaired = sorted([ct[k] for k in set(ct) - set(mri)] + [mri[k] for k in set(mri) - set(ct)])
    return Matching(jobs, unpaired)


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Without --overwrite an existing output is an error, named with how to proceed."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if len(existing) == 1:
        raise MedfuseError("already exists; pass --overwrite to replace it", existing[0])
    if existing:
        raise MedfuseError(f"{len(existing)} outputs already exist (first: {existing[0]}); "
                           "pass --overwrite to replace them")


# ------------------------------------------------------------------------------ outputs
def _inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or somewhere under it (after resolving links and '..')."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def refuse_unsafe_outputs(mode: str, ct: Path, mri: Path, out: Path, side_by_side: Path | None) -> None:
    """Outputs that would destroy or mix with inputs or each other, or are of the wrong kind:
    refused before any model loads, whatever --overwrite says."""
    for source in (ct, mri):
        if _inside(source, out) and (mode == "volume" or out.resolve() == source.resolve()):
            raise MedfuseError(f"is (or holds) the input {source}; writing there would replace it", out)
        if source.is_dir() and _inside(out, source):
            raise MedfuseError(f"is inside the input folder {source}; name an output outside the inputs", out)
    wants_folder = mode == "folder" or (mode == "volume" and output_kind(out) == "folder")
    if out.exists() and out.is_dir() != wants_folder:
        what = "a folder" if wants_folder else "a file"
        raise MedfuseError(f"exists and is not {what}, which this output must be", out)
    if mode == "volume" and wants_folder and out.is_dir():
        _refuse_foreign_folder(out)
    if side_by_side is not None:
        _check_side_by_side(mode, out, side_by_side)


def _refuse_foreign_folder(out: Path) -> None:
    """A DICOM series output replaces its folder whole: only an older series may be there."""
    if out.resolve() == Path.cwd().resolve():
        raise MedfuseError("is the current folder; a DICOM series output replaces its whole folder", out)
    other = [p for p in out.iterdir() if not p.name.startswith(".") and (p.is_dir() or not _is_dicom_file(p))]
    if other:
        raise MedfuseError(f"holds {other[0].name}, which is not part of a DICOM series; a series output replaces "
                           "the whole folder, so name a new folder", out)


def _check_side_by_side(mode: str, out: Path, side: Path) -> None:
    if mode == "folder":
        if side.resolve() == out.resolve():
            raise MedfuseError("--side-by-side is the output folder; its figures would replace the fused images", side)
        return
    if side.suffix.lower() != ".png":
        raise MedfuseError("--side-by-side writes a PNG figure; name it .png", side)
    if side.resolve() == out.resolve():
        raise MedfuseError("--side-by-side is the fused output itself; name another file", side)


def refuse_unwritable(paths: list[Path]) -> None:
    """Each output's nearest existing folder must be writable (read-only mounts, permissions)."""
    from medfuse.runtime.atomic import check_writable

    for path in {p.parent: p for p in paths}.values():  # a folder's thousand outputs: one check
        check_writable(path)
