"""BatchNorm statistics that match what inference runs.

Trained on random windows of batch 4, BatchNorm's running statistics are an exponential average
of a few very different batches (a window may be all background or all skull), so the network
that inference runs changes from epoch to epoch: on Harvard CT-MRI the validation loss jumped
between 2.5 and 3.7 at small learning rates, and which epoch scored best was luck. The fix used
here: re-estimate the statistics over many training batches (an exact average, not an
exponential one), then keep BatchNorm in eval mode for the last epochs, so the weights finish
tuning to the very network that is exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_batchnorm_eval(model: nn.Module) -> None:
    """BatchNorm layers normalise with their running statistics and stop updating them (call after
    `model.train()`); everything else keeps its mode."""
    for layer in batchnorm_layers(model):
        layer.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Batches, forward: Callable[[torch.Tensor, torch.Tensor], object],
                          distributed: bool = False) -> int:
    """Replace the running statistics of every BatchNorm in train mode by the plain average over
    `batches` (fed through `forward`); with `distributed`, averaged over the ranks too. Layers in
    eval mode (frozen encoders) keep theirs: re-estimating must not undo a freeze. The caller
    sets the modes (Trainer._set_phase); returns the batch count."""
    layers = [layer for layer in batchnorm_layers(model) if layer.training]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # None: cumulative average instead of an exponential one
    count = 0
    for ct, mri in batches:
        forward(ct, mri)
        count += 1
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
        if distributed and dist.is_initialized():
            for stat in (layer.running_mean, layer.running_var):
                dist.all_reduce(stat, op=dist.ReduceOp.SUM)
                stat /= dist.get_world_size()
    return count
