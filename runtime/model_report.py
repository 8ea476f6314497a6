"""What a model folder holds and whether it can run here: the data behind `medfuse-inspect`.

A deployer receiving a model folder asks what Polygraphy's `inspect model` answers for an engine,
plus what only medfuse knows: which checkpoint it came from, which modality pair and
preprocessing it expects, how close each artifact was to PyTorch at export, whether every file
is intact (sha256 against manifest.json), and which backend `medfuse-run` would pick on this
machine and why. Everything comes from manifest.json, the engine sidecar and the files; no
inference runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from medfuse.runtime.errors import MedfuseError
from medfuse.runtime.model_dir import (MANIFEST, PLAN, ModelDir, modality_pair, preprocess_config,
                                       read_onnx_metadata)

# sha256 states of an artifact
INTACT, DIFFERS, MISSING, UNRECORDED, UNCHECKED = "intact", "differs", "missing", "not recorded", "not checked"


@dataclass
class ArtifactReport:
    file: str
    format: str  # onnx | tensorrt-plan (manifest.json's names)
    precision: str
    size_bytes: int | None
    sha256: str  # one of the states above
    parity: dict | None  # manifest's figures at export: passed, psnr, max_abs, inputs
    runs_here: str  # "yes", or why not


@dataclass
class ModelReport:
    folder: str
    found_by: str  # --model, $MEDFUSE_MODEL or default
    medfuse_version: str | None
    checkpoint_sha256: str | None
    modality_pair: str
    preprocess: dict
    model_config: dict | None
    artifacts: list[ArtifactReport]
    auto_choice: str  # what medfuse-run's auto picks here, or why nothing can run
    engine: dict | None = None  # the TensorRT sidecar: version, GPU, compatibility flags
    problems: list[str] = field(default_factory=list)  # something is wrong: medfuse-inspect exits 1
    notes: list[str] = field(default_factory=list)  # something cannot be checked

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _sha256_state(path: Path, recorded: str | None, verify: bool) -> str:
    from medfuse.runtime.checksum import sha256_file

    if not path.is_file():
        return MISSING
    if not recorded:
        return UNRECORDED
    if not verify:
        return UNCHECKED
    return INTACT if sha256_file(path) == recorded else DIFFERS


def _listed(model: ModelDir) -> tuple[list[dict], list[str]]:
    """Artifacts as manifest.json lists them, then any file it does not list (an engine built
    later, a folder without a manifest); and what in the list cannot be taken as an artifact."""
    entries = (model.manifest or {}).get("artifacts", [])
    odd: list[str] = []
    if not isinstance(entries, list):
        odd.append(f"{MANIFEST}'s \"artifacts\" is not a list: its files cannot be checked")
        entries = []
    listed = []
    for art in entries:
        name = art.get("file") if isinstance(art, dict) else None
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            odd.append(f"{MANIFEST} lists an artifact that is not a file name in the folder: {name!r}")
        else:
            listed.append(art)
    names = {a["file"] for a in listed}
    extra = [{"file": p.name, "format": "onnx", "precision": precision} for precision, p in model.onnx.items()]
    if model.plan is not None:
        extra.append({"file": model.plan.name, "format": "tensorrt-plan",
                      "precision": (model.plan_info or {}).get("precision", "unknown")})
    return listed + [a for a in extra if a["file"] not in names], odd


def _runs_here(art: dict, available) -> str:
    if str(art.get("format", "")).startswith("tensorrt"):
        return f"no: {available.plan_problem}" if available.plan_problem else "yes"
    if not available.ort_providers:
        return "no: onnxruntime is not installed (pip install 'medfuse[cpu]')"
    from medfuse.runtime.backends.onnxruntime_backend import CUDA_EP

    if art.get("precision") == "fp16" and CUDA_EP not in available.ort_providers:
        return "yes, slowly (fp16 on a CPU)"
    return "yes"


def _parity(art: dict) -> dict | None:
    parity = art.get("parity")
    if not isinstance(parity, dict) or "passed" not in parity:
        return None
    figures = {k: parity.get(k) for k in ("passed", "psnr", "max_abs", "inputs")}
    if not isinstance(figures["passed"], bool):  # "false" as a string is not a pass
        figures["passed"] = None
    return figures


def _artifact(model: ModelDir, art: dict, available, verify: bool) -> ArtifactReport:
    path = model.root / str(art["file"])
    size = path.stat().st_size if path.is_file() else None
    state = _sha256_state(path, art.get("sha256"), verify)
    if state == MISSING:
        runs = "no: the file is missing"
    elif state == DIFFERS:
        runs = "no: damaged (medfuse-run refuses a file whose sha256 differs from the export's)"
    else:
        runs = _runs_here(art, available)
    return ArtifactReport(str(art["file"]), str(art.get("format", "onnx")), str(art.get("precision", "fp32")),
                          size, state, _parity(art), runs)


def _configs(model: ModelDir, artifacts: list[ArtifactReport]) -> tuple[str, dict]:
    """Modality pair and preprocessing as medfuse-run reads them: the model's own metadata (the
    first intact ONNX file's, else the engine sidecar's), else manifest.json."""
    from medfuse.runtime.backends.tensorrt_backend import PlanInfo

    damaged = {a.file for a in artifacts if a.sha256 in (DIFFERS, MISSING)}
    readable = [p for p in model.onnx.values() if p.name not in damaged]
    metadata: dict[str, str] = {}
    artifact = readable[0] if readable else (model.plan or model.root)
    if readable:
        try:
            metadata = read_onnx_metadata(artifact)
        except (MedfuseError, ImportError):  # unreadable, or no onnxruntime here: the manifest says it too
            metadata = {}
    elif model.plan_info:
        metadata = PlanInfo.from_sidecar(model.plan_info, model.plan).metadata()
    return modality_pair(metadata, model, artifact), preprocess_config(metadata, model, artifact).to_dict()


def _auto_choice(available, artifacts: list[ArtifactReport]) -> str:
    from medfuse.runtime.selection import choose

    try:
        choice = choose("auto", "auto", available)
    except MedfuseError as err:
        return f"nothing can run here: {err}"
    if any(a.file == choice.artifact and a.sha256 == DIFFERS for a in artifacts):
        return f"{choice.describe()}; but that file is damaged, so medfuse-run refuses it: export it again"
    return choice.describe()


def inspect_model(model: ModelDir, verify: bool = True) -> ModelReport:
    """The report of one model folder; `verify=False` skips hashing (0.3 s per 220 MB file)."""
    from medfuse.runtime.selection import probe

    available = probe(model)
    listed, odd = _listed(model)
    artifacts = [_artifact(model, art, available, verify) for art in listed]
    pair, preprocess = _configs(model, artifacts)
    manifest = model.manifest or {}
    report = ModelReport(
        folder=str(model.root), found_by=model.source, medfuse_version=manifest.get("medfuse_version"),
        checkpoint_sha256=manifest.get("checkpoint_sha256"), modality_pair=pair, preprocess=preprocess,
        model_config=manifest.get("model_config") if isinstance(manifest.get("model_config"), dict) else None,
        artifacts=artifacts,
        auto_choice=_auto_choice(available, artifacts), engine=model.plan_info if model.plan is not None else None)
    report.problems, report.notes = _problems(artifacts), _notes(model, artifacts) + odd
    return report


def _notes(model: ModelDir, artifacts: list[ArtifactReport]) -> list[str]:
    out = []
    if model.manifest is None:
        out.append(f"no {MANIFEST}: the files cannot be checked against their export")
    else:
        out += [f"{a.file} has no sha256 in {MANIFEST}: it cannot be checked" for a in artifacts
                if a.sha256 == UNRECORDED]
        out += [f"{a.file}'s parity verdict in {MANIFEST} is not true or false" for a in artifacts
                if a.parity is not None and a.parity.get("passed") is None]
    if model.plan is not None and model.plan_info is None:
        out.append(f"{PLAN} has no sidecar ({PLAN}.json): medfuse-run cannot tell which GPU it was built for")
    return out


def _problems(artifacts: list[ArtifactReport]) -> list[str]:
    out = []
    for art in artifacts:
        if art.sha256 == DIFFERS:
            out.append(f"{art.file} differs from the sha256 recorded at export (damaged or replaced): export it again")
        elif art.sha256 == MISSING:
            out.append(f"{art.file} is listed in {MANIFEST} but missing")
        if art.parity is not None and art.parity.get("passed") is False:
            out.append(f"{art.file} failed its parity check against PyTorch at export")
    return out
