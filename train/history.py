"""Per-epoch training record: history.json, curves.png and the console's epoch summary line.

One entry per epoch: every loss term (train and validation), the learning rate of each
parameter group, whether the encoders were frozen, and the epoch's wall time.
"""

from __future__ import annotations

import json
from pathlib import Path

from medfuse.runtime.atomic import atomic_output
from medfuse.train.loss import TERMS

LOGGED = ("total", *TERMS)  # the loss values recorded per epoch, train and validation
SHORT = {"total": "loss", "content": "cont", "structure": "struct", "detail": "det",
         "consistency": "cons", "gradient": "grad", "medical": "med"}


def write_json(path: Path, data: object) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def best_epoch(history: list[dict], key: str) -> dict | None:
    scored = [h for h in history if h.get(key) and "total" in h[key]]
    return min(scored, key=lambda h: h[key]["total"]) if scored else None


def plot_curves(path: Path, history: list[dict]) -> None:
    """Total loss and each term, train (solid) and validation (dashed), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [t for t in LOGGED if history and t in history[0]["train"]]
    cols = 4
    rows = max(1, -(-len(terms) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, term in zip(axes.flat, terms):
        ax.plot(epochs, [h["train"].get(term) for h in history], "-o", ms=3, label="train")
        val = [(h["epoch"], h["val"][term]) for h in history if h.get("val") and term in h["val"]]
        if val:
            ax.plot(*zip(*val), "--o", ms=3, label="val")
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(terms) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def terms_text(values: dict[str, float]) -> str:
    return " ".join(f"{SHORT[k]} {v:.4f}" for k, v in values.items())


def summary_line(entry: dict, epochs: int, improved: bool) -> str:
    val = entry["val"]
    val_text = f" | val {terms_text({k: val[k] for k in LOGGED})}" if val else ""
    lr = max(entry["lr"].values())
    frozen = " [frozen enc]" if entry["frozen_encoders"] else ""
    skipped = f" [{entry['train']['skipped_steps']} skipped]" if entry["train"]["skipped_steps"] else ""
    mark = " *" if improved else ""
    return (
        f"epoch {entry['epoch']:3d}/{epochs} train {terms_text({k: entry['train'][k] for k in LOGGED})}"
        f"{val_text} | lr {lr:.2e} | {entry['time_s']:.1f}s{frozen}{skipped}{mark}"
    )
