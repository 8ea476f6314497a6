"""`make demo`: the whole medfuse pipeline on phantom pairs the project generates itself.

Each step runs the real command-line tool (printed before it runs, so it can be copied):
phantom data -> medfuse-train finetune -> medfuse-export -> medfuse-run -> OUT/fused.png.
The model is the tiny configuration trained for a couple of minutes on the CPU: it shows the
pipeline working, not the quality of the full model (see README, "Results").
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    epochs: int = 60  # tiny model, 18 training pairs: about 1.5 s an epoch on 2 CPU cores
    lr: float = 3e-3  # the tiny model from random init needs a high rate to fuse within minutes
    cases: int = 4  # phantom heads; one is held out for validation
    slices_per_case: int = 6


def _tool(name: str) -> str:
    """The console script next to this interpreter (the venv's bin), else the one on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(argv)
    if done.returncode != 0:
        sys.exit(f"demo stopped: '{argv[0]}' exited with status {done.returncode}")
    print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)


def _write_demo_settings(path: Path) -> Path:
    # From random init there is nothing to protect by freezing the encoders, and a short run
    # cannot spend 3 of its epochs warming up.
    settings = {"train": {"freeze_encoder_epochs": 0, "warmup_epochs": 1}}
    path.write_text(json.dumps(settings, indent=2))
    return path


def run_demo(cfg: DemoConfig) -> Path:
    from medfuse.runtime.phantom import write_phantom_dataset

    out = cfg.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    print(f"== phantom CT/MRI pairs -> {data}")
    write_phantom_dataset(data, n_cases=cfg.cases, slices_per_case=cfg.slices_per_case, size=256, fmt="png", seed=0)

    run_dir, art = out / "run", out / "art"
    _step("train (tiny model, CPU)", [
        _tool("medfuse-train"), "finetune", "--data", str(data), "--out", str(run_dir), "--model-size", "tiny",
        "--epochs", str(cfg.epochs), "--lr", str(cfg.lr), "--patience", "0",
        "--config", str(_write_demo_settings(out / "demo_settings.json")),
        *(["--resume", str(run_dir)] if (run_dir / "last.pt").exists() else []),
    ])
    _step("export: ONNX fp32, fp16 and int8, checked against PyTorch", [
        _tool("medfuse-export"), str(run_dir / "best.pt"), "-o", str(art), "--fp16", "--int8", "--calib", str(data),
    ])
    ct, mri = _held_out_pair(data, run_dir)
    fused = out / "fused.png"
    _step("fuse a held-out pair with the lean runtime (no torch)", [
        _tool("medfuse-run"), str(ct), str(mri), "-o", str(fused), "--model", str(art),
        "--side-by-side", str(out / "side_by_side.png"), "--metrics", "--overwrite",
    ])
    print(f"\nfused image: {fused}\nCT | MRI | fused: {out / 'side_by_side.png'}")
    return fused


def _held_out_pair(data: Path, run_dir: Path) -> tuple[Path, Path]:
    """A middle slice of a case the training run held out for validation (history.json names them)."""
    val_cases = json.loads((run_dir / "history.json").read_text())["val_cases"]
    slices = sorted(p for p in (data / "CT").glob("*.png") if p.stem[:2] in val_cases)
    ct = slices[len(slices) // 2]
    return ct, data / "MRI" / ct.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder [demo]")
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs, help="training epochs")
    args = parser.parse_args(argv)
    run_demo(DemoConfig(out=args.out, epochs=args.epochs))


if __name__ == "__main__":
    main()
