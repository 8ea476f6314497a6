"""DistributedDataParallel on 2 CPU processes (Gloo): ranks stay in sync (also through a step
that only one rank found non-finite), only rank 0 writes.

The processes are started the way torchrun starts them (RANK/WORLD_SIZE/MASTER_* in the
environment) and run the same Trainer the CLI runs.
"""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from medfuse.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str, dump: str) -> None:
    import os

    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    from medfuse.train.device import init_distributed, shutdown_distributed
    from medfuse.train.run_config import RunConfig
    from medfuse.train.trainer import Trainer

    run = RunConfig.defaults("finetune")
    run = run.updated("train", {"data": data, "out": out, "precision": "fp32", "device": "cpu", "batch_size": 2, "epochs": 2,
                                "val_fraction": 0.3, "warmup_epochs": 1, "freeze_encoder_epochs": 1,
                                "lr": 1e-3})
    run = run.updated("model", {"encoder": "resnet18", "width": 8}).updated("preprocess", {"input_size": 64})
    env = init_distributed("cpu")
    try:
        trainer = Trainer(run, env)
        first_batch = next(iter(trainer.train_loader))[0]
        real_loss, calls = trainer.loss_fn, []

        def nan_once_on_rank_1(fused, ct, mri):  # every rank must skip that step, or DDP would hang
            calls.append(1)
            total, terms = real_loss(fused, ct, mri)
            return (total * float("nan"), terms) if rank == 1 and len(calls) == 1 else (total, terms)

        trainer.loss_fn = nan_once_on_rank_1
        trainer.fit()
        torch.save({"params": {k: p.detach() for k, p in trainer.model.named_parameters()},
                    "first_batch": first_batch}, f"{dump}/rank{rank}.pt")
    finally:
        shutdown_distributed()


def test_two_gloo_processes_stay_in_sync(phantom_dir, tmp_path):
    out = tmp_path / "out"
    mp.spawn(_worker, args=(2, _free_port(), str(phantom_dir), str(out), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each rank trained on its own shard
    start = load_checkpoint(out / "last.pt")["model_state"]
    moved = 0
    for name, p0 in r0["params"].items():
        assert torch.equal(p0, r1["params"][name]), name  # identical after every all-reduced step
        assert torch.equal(p0, start[name]), name  # and rank 0 wrote them
        moved += 1
    assert moved > 0
    history = json.loads((out / "history.json").read_text())
    assert history["world_size"] == 2 and [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert [e["train"]["skipped_steps"] for e in history["epochs"]] == [1, 0]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "curves.png", "history.json", "last.pt"]


def test_validation_shards_count_every_image_once():
    """DistributedSampler pads: with 5 images on 2 ranks image 0 was validated twice."""
    from medfuse.train.trainer import ShardSampler

    shards = [list(ShardSampler(5, rank, 2)) for rank in range(2)]
    assert shards == [[0, 2, 4], [1, 3]] and sorted(shards[0] + shards[1]) == list(range(5))
    assert list(ShardSampler(5, 0, 1)) == list(range(5))  # one process: the whole set in order, as before
