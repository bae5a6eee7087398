"""BatchNorm helpers shared by the models."""
from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn


@contextmanager
def bn_running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Inside the block, the BatchNorm layers of ``module`` normalise with batch statistics but
    leave their running statistics untouched (e.g. PIRL's patches must not move the statistics
    that the image views, and evaluation, use).  The layers that tracked statistics before are
    restored on exit, also after an exception."""
    bns = [m for m in module.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True
