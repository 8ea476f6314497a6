"""The training loop: one epoch at a time, checkpointed so a killed run resumes exactly.

Per step: autocast forward, the loss in float32 outside autocast, a finiteness check (agreed by
all ranks, so DDP never hangs on a skipped step), scaled backward, unscale, clip, step.
Per epoch: scheduler step, validation, last.pt (+ best.pt, epoch_NNN.pt), history.json,
curves.png. Resume restores weights, optimiser, scheduler, scaler, RNG states, history and the
early-stopping counter; shuffling and augmentation are seeded from (seed, epoch, rank), so the
resumed epochs see the same batches the uninterrupted run would have.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from medfuse.runtime.atomic import atomic_link_or_copy, check_writable, remove_stale_temporaries
from medfuse.runtime.errors import MedfuseError
from medfuse.train.augment import augment_pair
from medfuse.train.batchnorm import recalibrate_batchnorm, set_batchnorm_eval
from medfuse.train.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from medfuse.train.device import (
    DistEnv,
    all_reduce_sum,
    autocast,
    resolve_device,
    resolve_precision,
    uses_channels_last,
)
from medfuse.train.history import LOGGED, best_epoch, plot_curves, summary_line, terms_text, write_json
from medfuse.train.loss import FusionLoss
from medfuse.train.model import build_model
from medfuse.train.run_config import RunConfig
from medfuse.train.schedule import WarmupCosine, build_optimizer, build_scheduler, set_encoders_frozen
from medfuse.train.setup import DataSplit, load_data, warm_start



@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    best_epoch: int | None
    best_loss: float
    stopped_early: bool
    seconds: float


class NonFiniteLoss(MedfuseError):
    """Too many consecutive steps with a NaN/inf loss: the run is diverging."""


# curves.png at most this often (and after the last epoch): drawing it takes 0.3-0.6 s, 3 % of a
# 13 s CPU epoch and 10-20 % of a 2.5 s epoch on an H200.
CURVES_EVERY_S = 30.0
RUN_FILES = ("last.pt", "best.pt", "epoch_*.pt", "history.json", "curves.png", "config.json")


def check_fresh_out(out: Path, overwrite: bool) -> None:
    """A new run must not mix its files with an earlier run's (stale best.pt, epoch_NNN.pt), and
    must be able to write its folder: both checked before minutes of data loading."""
    check_writable(out / "config.json")  # also refuses an --out that is a file
    if (out / "last.pt").exists() and not overwrite:
        raise MedfuseError("already holds a training run (last.pt): continue it with --resume, "
                           "or pass --overwrite to replace it", out)


def remove_run_files(out: Path) -> None:
    for pattern in RUN_FILES:
        for path in out.glob(pattern):
            path.unlink()


# Passes over the training set that re-estimate BatchNorm statistics: with random windows one pass
# sees each image in one window; four see four windows of each (about 20 s on the 2-core CPU).
RECALIBRATION_PASSES = 4


class ShardSampler(Sampler):
    """Every `world`-th index from `rank`, in order: each image on exactly one rank, none repeated."""

    def __init__(self, size: int, rank: int, world: int):
        self.indices = list(range(rank, size, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Trainer:
    """Owns the model, optimiser state and loaders of one run (one process of a DDP job)."""

    def __init__(self, run: RunConfig, env: DistEnv, console: Console | None = None, resume: dict | None = None,
                 overwrite: bool = False):
        self.run, self.cfg, self.env = run, run.train, env
        self.out = Path(self.cfg.out)
        self.overwrite = overwrite
        if resume is None:
            check_fresh_out(self.out, overwrite)
        self.console = console or Console()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.device = resolve_device(self.cfg.device, env.local_rank)
        self.precision = resolve_precision(self.cfg.precision, self.device)
        self.channels_last = uses_channels_last(self.precision, self.device)
        self.data: DataSplit = load_data(run, self.log)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(run.model)
        if resume is None:
            warm_start(self.model, run, self.log)
        self.model.to(self.device, memory_format=self._memory_format)
        self.loss_fn = FusionLoss(run.loss)
        self.optimizer = build_optimizer(
            self.model, self.cfg.lr, self.cfg.weight_decay, self.cfg.encoder_lr_mult, self.cfg.fusion_lr_mult
        )
        self.scheduler = build_scheduler(self.optimizer, self.cfg.warmup_epochs, self.cfg.epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.train_loader = self._loader(self.data.train, shuffle=True)
        self.val_loader = self._loader(self.data.val, shuffle=False) if len(self.data.val) else None
        self.history: list[dict] = []
        self.start_epoch, self.best_loss, self.since_best = 0, math.inf, 0
        self._plotted_at, self._plotted_epochs = -math.inf, 0
        self.net: torch.nn.Module = self.model
        self._frozen: bool | None = None
        if resume is not None:
            self._restore(resume)

    # ---- setup helpers -------------------------------------------------------------------------
    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def log(self, message: str, style: str | None = None) -> None:
        if self.env.is_main:
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        """Training: DistributedSampler (shuffled, equal shares). Validation: disjoint shards without
        padding: DistributedSampler repeats images so every rank gets as many, and the validation
        loss (hence best.pt and early stopping) would then depend on the number of processes."""
        if shuffle:
            sampler = DistributedSampler(
                dataset, num_replicas=self.env.world_size, rank=self.env.rank, shuffle=True, seed=self.cfg.seed
            )
        else:
            sampler = ShardSampler(len(dataset), self.env.rank, self.env.world_size)
        return DataLoader(
            dataset, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _restore(self, ckpt: dict) -> None:
        self._check_same_split(ckpt.get("split"))
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.scheduler.load_state_dict(ckpt["scheduler_state"])
        self._reschedule()
        if ckpt.get("scaler_state"):
            self.scaler.load_state_dict(ckpt["scaler_state"])
        restore_rng_state(ckpt["rng_state"])
        self.start_epoch = int(ckpt["epoch"])
        self.best_loss = float(ckpt["best_val_loss"])
        self.since_best = int(ckpt.get("epochs_since_best", 0))
        self.history = list(ckpt.get("history", []))
        self.log(f"resumed from {self.out / 'last.pt'} after epoch {self.start_epoch}")

    def _check_same_split(self, saved: dict | None) -> None:
        """A resumed run must see the pairs it started with: with pairs added or removed the split
        is drawn anew, held-out cases land in training and best.pt compares losses of different
        validation sets. (Checkpoints before this record have none to compare.)"""
        if saved is None or saved == self.data.names:
            return
        moved = sorted(set(saved["val"]) ^ set(self.data.names["val"]))
        added = len(set(self.data.names["train"] + self.data.names["val"]) - set(saved["train"] + saved["val"]))
        removed = len(set(saved["train"] + saved["val"]) - set(self.data.names["train"] + self.data.names["val"]))
        raise MedfuseError(
            f"the data folder {self.cfg.data} no longer gives this run's pairs ({added} added, {removed} gone, "
            f"{len(moved)} moved in or out of validation, e.g. {', '.join(moved[:3]) or 'none'}): resuming would "
            "train on other pairs than the run started with; start a new run from it instead "
            f"(--init {self.out / 'last.pt'} --out NEW)", self.out)

    def _reschedule(self) -> None:
        """Apply this run's epochs to a restored schedule, so `--resume --epochs N` stretches the
        cosine instead of finishing at lr 0 (unchanged epochs give the same values bit for bit)."""
        schedule = WarmupCosine(self.cfg.warmup_epochs, self.cfg.epochs)
        self.scheduler.lr_lambdas = [schedule] * len(self.optimizer.param_groups)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * schedule(self.scheduler.last_epoch)

    def _set_phase(self, epoch: int) -> None:
        """Train mode, encoder and BatchNorm freezing for this epoch, and a DDP wrapper matching what trains."""
        frozen = epoch < self.cfg.freeze_encoder_epochs
        self.model.train()
        set_encoders_frozen(self.model, frozen)
        if self.cfg.freeze_batchnorm_epochs:
            first_fixed = max(0, self.cfg.epochs - self.cfg.freeze_batchnorm_epochs)
            if epoch == first_fixed:  # a run resumed later on restores the fixed statistics instead
                self._recalibrate_batchnorm(epoch)
            if epoch >= first_fixed:
                set_batchnorm_eval(self.model)
        if frozen != self._frozen:
            if self._frozen is not None:
                self.log(f"encoders {'frozen' if frozen else 'unfrozen'} from epoch {epoch + 1}")
            # DDP registers the parameters that require grad when it is built: rebuild on change.
            if self.env.enabled:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.net = DistributedDataParallel(
                    self.model, device_ids=ids, find_unused_parameters=self.run.model.output_head == "plain"
                )
            self._frozen = frozen

    def _recalibrate_batchnorm(self, epoch: int) -> None:
        """Exact BatchNorm statistics over RECALIBRATION_PASSES passes of augmented training batches."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 1299709 + 104729 * self.env.rank)
        per_pass = min(len(self.train_loader), self.cfg.steps_per_epoch or len(self.train_loader))

        def batches():
            for repeat in range(RECALIBRATION_PASSES):
                self.train_loader.sampler.set_epoch(epoch + 100003 * (repeat + 1))  # fresh orders
                for step, (ct, mri) in enumerate(self.train_loader):
                    if step >= per_pass:
                        break
                    ct, mri = self._batch(ct, mri)
                    if self.cfg.augment:
                        ct, mri = self._batch(*augment_pair(ct, mri, self.run.augment, gen))
                    yield ct, mri

        def forward(ct, mri):
            with autocast(self.precision, self.device):
                return self.model(ct, mri)

        count = recalibrate_batchnorm(self.model, batches(), forward, distributed=self.env.enabled)
        self.log(f"epoch {epoch + 1}: BatchNorm statistics re-estimated over {count} training batches, "
                 f"fixed for the last {self.cfg.epochs - epoch} epoch(s)")

    # ---- one step / one epoch ------------------------------------------------------------------
    def _batch(self, ct: torch.Tensor, mri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmt = self._memory_format
        ct = ct.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        mri = mri.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        return ct, mri

    def _forward_loss(self, net, ct, mri) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with autocast(self.precision, self.device):
            fused = net(ct, mri)
        return self.loss_fn(fused.float(), ct.float(), mri.float())  # fp32, outside autocast

    def _all_finite(self, total: torch.Tensor) -> bool:
        flag = torch.tensor([0.0 if torch.isfinite(total) else 1.0], dtype=torch.float64, device=self.device)
        return all_reduce_sum(flag, self.env).item() == 0

    def _train_step(self, ct, mri, gen: torch.Generator) -> dict[str, float] | None:
        ct, mri = self._batch(ct, mri)
        if self.cfg.augment:
            ct, mri = self._batch(*augment_pair(ct, mri, self.run.augment, gen))
        # A forward that overflows also writes NaN into BatchNorm running statistics: keep a copy.
        buffers = [b.detach().clone() for b in self.model.buffers()]
        total, terms = self._forward_loss(self.net, ct, mri)
        self.optimizer.zero_grad(set_to_none=True)
        if not self._all_finite(total):
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)
            return None
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return _floats(terms)

    def _nonfinite(self, epoch: int, step: int, streak: int) -> None:
        self.log(f"epoch {epoch + 1} step {step + 1}: non-finite loss; step skipped, weights untouched", "yellow")
        if streak >= self.cfg.max_nonfinite_steps:
            hint = "" if self.precision == "fp32" else "; try --precision fp32"
            raise NonFiniteLoss(f"{streak} consecutive non-finite losses at epoch {epoch + 1}: training diverged (lower --lr{hint})")

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self._set_phase(epoch)
        self.train_loader.sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(self.cfg.seed + 7919 * epoch + 104729 * self.env.rank)
        n_steps = len(self.train_loader)
        if self.cfg.steps_per_epoch:
            n_steps = min(n_steps, self.cfg.steps_per_epoch)
        sums = dict.fromkeys(LOGGED, 0.0)
        done = skipped = streak = 0
        with self._progress() as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{self.cfg.epochs}", total=n_steps, terms="")
            for step, (ct, mri) in enumerate(self.train_loader):
                if step >= n_steps:
                    break
                values = self._train_step(ct, mri, gen)
                if values is None:
                    skipped, streak = skipped + 1, streak + 1
                    self._nonfinite(epoch, step, streak)
                else:
                    streak, done = 0, done + 1
                    sums = {k: sums[k] + values[k] for k in LOGGED}
                progress.update(task, advance=1, terms=terms_text({k: v / max(done, 1) for k, v in sums.items()}))
        means = self._global_mean(sums, done)
        means["skipped_steps"] = skipped
        return means

    def _global_mean(self, sums: dict[str, float], count: int) -> dict[str, float]:
        values = torch.tensor([*sums.values(), count], dtype=torch.float64, device=self.device)
        values = all_reduce_sum(values, self.env).tolist()
        n = values[-1]
        return {k: (v / n if n else math.nan) for k, v in zip(sums, values)}

    @torch.no_grad()
    def _validate(self) -> dict[str, float] | None:
        if self.val_loader is None:
            return None
        self.model.eval()
        sums = dict.fromkeys(LOGGED, 0.0)
        count = 0
        for ct, mri in self.val_loader:
            ct, mri = self._batch(ct, mri)
            _, terms = self._forward_loss(self.model, ct, mri)
            values = _floats(terms)
            sums = {k: sums[k] + values[k] * ct.shape[0] for k in LOGGED}
            count += ct.shape[0]
        return self._global_mean(sums, count)

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[terms]}"),
            console=self.console, transient=True, disable=not (self.env.is_main and self.console.is_terminal),
        )

    # ---- the run -------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        started = time.perf_counter()
        if self.env.is_main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise MedfuseError(f"cannot create the output folder ({err.strerror})", self.out) from err
            if self.overwrite and self.start_epoch == 0:
                remove_run_files(self.out)
            for stale in remove_stale_temporaries(self.out):
                self.log(f"removed {stale.name}, left by an interrupted write")
            write_json(self.out / "config.json", self.run.to_dict())
        self.log(
            f"training on {self.device} ({self.precision}{', channels_last' if self.channels_last else ''}"
            f"{f', {self.env.world_size} processes' if self.env.enabled else ''}): "
            f"{len(self.data.train)} train / {len(self.data.val)} val images, {self.cfg.epochs} epochs"
        )
        stopped = False
        epoch = self.start_epoch
        for epoch in range(self.start_epoch, self.cfg.epochs):
            t0 = time.perf_counter()
            lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
            train = self._train_epoch(epoch)
            self.scheduler.step()
            val = self._validate()
            entry = {
                "epoch": epoch + 1, "train": train, "val": val, "lr": lrs,
                "frozen_encoders": bool(self._frozen), "time_s": round(time.perf_counter() - t0, 3),
            }
            improved = self._track_best(entry)
            self.history.append(entry)
            self._write_epoch(epoch, improved)
            self.log(summary_line(entry, self.cfg.epochs, improved))
            if self.cfg.patience and self.since_best >= self.cfg.patience:
                self.log(f"early stop: no improvement for {self.since_best} epochs")
                stopped = True
                break
        return self._finish(started, stopped, epoch)

    def _track_best(self, entry: dict) -> bool:
        score = (entry["val"] or entry["train"])["total"]
        if score < self.best_loss:  # False for NaN
            self.best_loss, self.since_best = score, 0
            return True
        self.since_best += 1
        return False

    def _payload(self, epoch: int) -> dict:
        return {
            "model_config": self.run.model.to_dict(),
            "preprocess_config": self.run.preprocess.to_dict(),
            "train_config": self.cfg.to_dict(),
            "loss_config": self.run.loss.to_dict(),
            "augment_config": self.run.augment.to_dict(),
            "model_state": {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
            "epoch": epoch + 1,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict(),
            "rng_state": capture_rng_state(),
            "best_val_loss": self.best_loss,
            "epochs_since_best": self.since_best,
            "history": self.history,
            "split": self.data.names,
            "modality_pair": self.cfg.modality_pair if self.cfg.stage == "finetune" else "vis-ir",
        }

    def _write_epoch(self, epoch: int, improved: bool) -> None:
        """last.pt first (the resume point), then its second names, then the human-readable files."""
        if not self.env.is_main:
            return
        last = save_checkpoint(self.out / "last.pt", self._payload(epoch))
        copies = ["best.pt"] if improved else []
        if self.cfg.checkpoint_every and (epoch + 1) % self.cfg.checkpoint_every == 0:
            copies.append(f"epoch_{epoch + 1:03d}.pt")
        for name in copies:  # second names of this epoch's file, not copies of its bytes
            atomic_link_or_copy(last, self.out / name)
        write_json(self.out / "history.json", self._history_doc())
        if time.monotonic() - self._plotted_at >= CURVES_EVERY_S:
            self._plot()

    def _plot(self) -> None:
        plot_curves(self.out / "curves.png", self.history)
        self._plotted_at, self._plotted_epochs = time.monotonic(), len(self.history)

    def _history_doc(self) -> dict:
        return {
            "stage": self.cfg.stage, "device": str(self.device), "precision": self.precision,
            "channels_last": self.channels_last, "world_size": self.env.world_size,
            "train_images": len(self.data.train), "val_images": len(self.data.val),
            "val_cases": self.data.val_cases, "epochs": self.history,
        }

    def _finish(self, started: float, stopped: bool, epoch: int) -> TrainResult:
        if self.env.is_main and self._plotted_epochs != len(self.history):
            self._plot()  # the final curves
        seconds = time.perf_counter() - started
        best = best_epoch(self.history, "val" if self.val_loader is not None else "train")
        which = "val" if self.val_loader is not None else "train"
        best_text = f"best {which} loss {self.best_loss:.4f} at epoch {best['epoch']}" if best else "no finite loss"
        self.log(f"done: {len(self.history)} epochs in {seconds:.1f}s; {best_text}; outputs in {self.out}")
        return TrainResult(self.out, len(self.history), best["epoch"] if best else None, self.best_loss, stopped, seconds)


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The logged loss values as Python floats with one device sync instead of one per term."""
    return dict(zip(LOGGED, torch.stack([terms[k].detach().float() for k in LOGGED]).tolist()))
