"""`medfuse-bench report -o DIR`: report.md, results.json and PNG plots from one suite run."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from medfuse.benchmarks import plots, tables
from medfuse.benchmarks.suite import SuiteResult
from medfuse.runtime.atomic import atomic_output, check_writable
from medfuse.runtime.json_safe import json_safe

SCHEMA = "medfuse-bench-report/1"
REPORT_MD, RESULTS_JSON = "report.md", "results.json"
LATENCY_PNG, QUALITY_PNG, GRID_PNG = "latency.png", "quality.png", "grid.png"

SSIM_NOTE = ("SSIM = SSIM(F, CT) + SSIM(F, MRI), 7x7 uniform window, sample covariance, data_range = {dr:g} "
             "for 8-bit images. The CDDFuse evaluator called scikit-image without data_range on float "
             "images, which older scikit-image turned into 2 (the float dtype range): its tables are "
             "reproduced with `--ssim-data-range 2` and read lower.")
METRIC_NOTE = ("Metrics on 8-bit gray (colour on BT.601 luma), as the CDDFuse evaluator: EN in bits, "
               "MI = MI(F, CT) + MI(F, MRI) in nats, SCD = corr(CT, F - MRI) + corr(MRI, F - CT), "
               "VIF = VIF(CT, F) + VIF(MRI, F) pixel domain 4 scales noise variance 2, Qabf Sobel with "
               "Xydeas-Petrovic constants, PSNR peak max(F) against the mean MSE to both sources. "
               "Each figure is the mean over the pairs.")


def results_document(res: SuiteResult, machine: dict, generated: str) -> dict:
    return json_safe({"schema": SCHEMA, "generated": generated, "machine": machine, **res.to_json()})


def _section(title: str, table: tables.Table, note: str = "") -> list[str]:
    out = [f"## {title}", ""]
    if note:
        out += [note, ""]
    return out + ([tables.markdown(table), ""] if table[1] else ["(no rows)", ""])


def _model_lines(model: dict) -> list[str]:
    """Which checkpoint and artifacts were measured, by path and sha256 (first 12 hex digits)."""
    out = []
    if model.get("checkpoint"):
        out.append(f"- checkpoint `{model['checkpoint']}`, sha256 {model['checkpoint_sha256'][:12]}")
    if model.get("artifacts"):
        source = model.get("artifacts_from_checkpoint_sha256")
        if not source:
            origin = "no manifest.json names their checkpoint"
        elif model.get("checkpoint_sha256") and source != model["checkpoint_sha256"]:
            origin = f"exported from another checkpoint (sha256 {source[:12]})"
        else:
            origin = f"exported from checkpoint sha256 {source[:12]}"
        out.append(f"- artifacts `{model['artifacts']}`, {origin}")
    return (["## Model", "", *out, ""]) if out else []


def render_markdown(doc: dict, images: list[str]) -> str:
    s = doc["settings"]
    lines = [
        "# medfuse benchmark report", "",
        f"Generated {doc['generated']} by `medfuse-bench report` (medfuse {doc['machine']['medfuse']}) "
        f"on {doc['data']}.", "",
    ]
    lines += _model_lines(s.get("model", {}))
    lines += _section("Machine and versions", (["item", "value"], [[k, str(v)] for k, v in doc["machine"].items()]))
    engines = [[e["name"], e["device"], "ran"] for e in doc["engines"]]
    engines += [[k["name"], "-", f"skipped: {k['reason']}"] for k in doc["skipped"]]
    lines += _section("Engines", (["engine", "device", "status"], engines))
    flops = doc.get("flops_per_image")
    flops_text = f"{flops / 1e9:.2f} GFLOP per image" if flops else "FLOP count unavailable"
    lines += _section("Latency", tables.latency_table(doc["latency"]),
                      f"Input {s['input_size']} x {s['input_size']}, {s['warmup']} warm-up and {s['iters']} timed "
                      f"calls per engine and batch, engines interleaved; {s['copies']}; {s['threads']} CPU threads; "
                      f"model {flops_text}. Speedup: PyTorch eager fp32 p50 / this p50, same run.")
    if doc["overhead"]:
        lines += _section("Pre/postprocessing and medfuse-run, per pair", tables.stage_table(doc["overhead"]))
    lines += _section("Parity against PyTorch fp32", tables.parity_table(doc["parity"]),
                      "Outputs in [0, 1]; PSNR with peak 1; dX = mean change of fusion metric X. A row fails "
                      "over its precision's tolerance (export/parity.py; bf16 in benchmarks/parity.py).")
    lines += _section("Fusion quality", tables.quality_table(doc["quality"]),
                      METRIC_NOTE + " " + SSIM_NOTE.format(dr=s["ssim_data_range"]))
    if doc["wins"]:
        lines += _section("medfuse against each baseline", tables.wins_table(doc["wins"]),
                          "Higher is better on each of EN, SD, SF, MI, SCD, VIF, Qabf, SSIM.")
    if doc.get("paired"):
        lines += _section("Which wins hold pair by pair", tables.paired_table(doc["paired"]),
                          "A win holds when the 95 % bootstrap interval of the mean per-pair difference lies "
                          "above zero; results.json gives each metric's mean, interval and pairs won.")
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in images] + [""]
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def generated_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def check_output_folder(out_dir: Path) -> None:
    """Refuse a report folder that cannot be one (a file, under a file, read-only)."""
    check_writable(Path(out_dir) / REPORT_MD)


def _machine_line(doc: dict) -> str:
    """Where the latency was measured, in one line: the CPU (and GPU), and the threads used."""
    m = doc["machine"]
    where = m["cpu"] + (f" + {m['gpu']}" if m.get("gpu") else "")
    threads = doc["settings"]["threads"]
    return f"{where}; {threads} CPU thread{'' if threads == 1 else 's'}"


def write_report(out_dir: Path, res: SuiteResult, machine: dict) -> list[Path]:
    """Write every report file into `out_dir` (created); returns the paths written."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = results_document(res, machine, generated_now())
    written: list[Path] = []
    if doc["latency"]:
        written.append(plots.latency_chart(doc["latency"], out_dir / LATENCY_PNG, _machine_line(doc)))
    if doc["quality"]:
        written.append(plots.quality_chart(doc["quality"], out_dir / QUALITY_PNG, tables.quality_metrics(doc["quality"])))
    if res.examples:
        written.append(plots.comparison_grid(res.examples, out_dir / GRID_PNG))
    _write_text(out_dir / RESULTS_JSON, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    _write_text(out_dir / REPORT_MD, render_markdown(doc, [p.name for p in written]))
    return [out_dir / REPORT_MD, out_dir / RESULTS_JSON, *written]
