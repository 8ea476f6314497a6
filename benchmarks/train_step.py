"""Time full training steps (forward, fp32 loss, backward, clip, AdamW) per precision.

    python -m medfuse.benchmarks.train_step                    # CPU: fp32 vs bf16+channels_last
    python -m medfuse.benchmarks.train_step --device cuda      # CUDA: fp32 vs fp16+GradScaler

Each precision gets fresh weights, `--warmup` untimed steps (oneDNN/cuDNN pick kernels on the
first calls), then `--steps` timed ones on random inputs; the median step is reported.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from medfuse.runtime.atomic import atomic_output
from medfuse.runtime.errors import run_cli
from medfuse.train.config import ModelConfig
from medfuse.train.device import autocast, resolve_device, resolve_precision, uses_channels_last
from medfuse.train.loss import FusionLoss
from medfuse.train.model import build_model, count_parameters
from medfuse.train.schedule import build_optimizer

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False, help=__doc__.splitlines()[0])

DEFAULT_PRECISIONS = {"cpu": ["fp32", "bf16"], "cuda": ["fp32", "fp16"]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model_cfg: ModelConfig, precision: str, device: torch.device, batch: int, size: int,
               steps: int, warmup: int) -> list[float]:
    """Seconds of each timed training step at one precision."""
    torch.manual_seed(0)
    channels_last = uses_channels_last(precision, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(model_cfg).to(device, memory_format=fmt).train()
    optimizer = build_optimizer(model, 1e-5, 1e-4, 0.1, 0.5)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = FusionLoss()
    ct = torch.rand(batch, 1, size, size, device=device).repeat(1, 3, 1, 1).contiguous(memory_format=fmt)
    mri = torch.rand(batch, 1, size, size, device=device).contiguous(memory_format=fmt)
    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with autocast(precision, device):
            fused = model(ct, mri)
        total, _ = loss_fn(fused.float(), ct, mri)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


@app.command()
def main_command(
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N (auto = CUDA when present).")] = "cpu",
    precision: Annotated[Optional[list[str]], typer.Option(help="Precisions to time (repeatable) [cpu: fp32 bf16; cuda: fp32 fp16].")] = None,
    batch: Annotated[int, typer.Option(help="Images per step.")] = 4,
    size: Annotated[int, typer.Option(help="Input side (multiple of 32).")] = 256,
    steps: Annotated[int, typer.Option(help="Timed steps per precision.")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads [torch default].")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="Time ModelConfig.tiny() instead of the spec model.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """Seconds per training step and images per second, one line per precision."""
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model_cfg = ModelConfig.tiny() if tiny else ModelConfig()
    n_params = count_parameters(build_model(model_cfg))
    print(f"model {'tiny' if tiny else 'default'} ({n_params / 1e6:.1f} M parameters), batch {batch}, "
          f"{size}x{size}, device {dev}, {torch.get_num_threads()} CPU threads, median of {steps} steps")
    results = []
    for name in precision or DEFAULT_PRECISIONS[dev.type]:
        resolved = resolve_precision(name, dev)
        times = time_steps(model_cfg, resolved, dev, batch, size, steps, warmup)
        median = statistics.median(times)
        layout = "channels_last" if uses_channels_last(resolved, dev) else "NCHW"
        results.append({"precision": resolved, "layout": layout, "s_per_step": median,
                        "images_per_s": batch / median, "steps_s": times})
        print(f"  {resolved:5s} {layout:13s} {median:8.3f} s/step {batch / median:8.2f} images/s")
    if len(results) > 1:
        print(f"  speed-up {results[-1]['precision']} vs {results[0]['precision']}: "
              f"{results[0]['s_per_step'] / results[-1]['s_per_step']:.2f}x")
    if json_out:
        meta = {"device": str(dev), "batch": batch, "size": size, "threads": torch.get_num_threads(),
                "model": "tiny" if tiny else "default", "parameters": n_params, "results": results}
        with atomic_output(json_out) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
