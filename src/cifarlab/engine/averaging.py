"""Weight averaging: an exponential moving average of the weights and BatchNorm statistics (weight EMA)."""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage(torch.optim.swa_utils.AveragedModel):
    """torch's ``AveragedModel`` with an EMA of parameters and buffers, updated by a hook after every optimizer step
    (so the loop's step stays one line, whatever runs it). The first update copies the weights; update t (t >= 2)
    does ``avg = d_t * avg + (1 - d_t) * weights`` with ``d_t = min(decay, t / (t + warmup))``.

    The warm-up of the decay (as in TensorFlow's and timm's EMA; ``warmup`` = ``ema_warmup``, default 9) keeps the
    average to about the last tenth of the steps taken so far until ``decay`` is reached. Without it, a decay whose
    horizon is close to the run's length keeps the first steps' near-random weights in the average, and ends far below
    the same run without EMA."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, decay: float, warmup: float = 9.0) -> None:
        super().__init__(model, use_buffers=True)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0  # on the host: counting on the device (n_averaged) would mean reading it every step
        self.module.requires_grad_(False)
        # the (average, source) tensor lists, built once: the optimizer and load_state_dict update the source's
        # tensors in place, so these views stay the model's weights for the whole run
        avg = [*self.module.parameters(), *self.module.buffers()]
        cur = [t.detach() for t in (*model.parameters(), *model.buffers())]
        self._all = (avg, cur)
        self._floats = tuple(list(z) for z in zip(*[(a, c) for a, c in zip(avg, cur) if a.is_floating_point()]))
        self._ints = [(a, c) for a, c in zip(avg, cur) if not a.is_floating_point()]
        self._source_id = id(model)
        self._hook = optimizer.register_step_post_hook(lambda *_: self.update_parameters(model))

    def decay_at(self, t: int) -> float:
        """The decay used by update ``t`` (1-based; update 1 copies)."""
        return min(self.decay, t / (t + self.warmup))

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One EMA update of parameters and floating-point buffers (integer buffers, e.g. BatchNorm's batch count,
        are copied), without reading the device: torch's ``update_parameters`` compares ``n_averaged`` on the host
        2-3 times per step, which stalls the queue of CUDA launches. ``model`` is the module given at construction."""
        if id(model) != self._source_id:
            raise ValueError("WeightAverage averages the module it was built with; build one for another module")
        self.updates += 1
        if self.updates == 1:
            torch._foreach_copy_(*self._all)
        else:
            if self._floats:
                torch._foreach_lerp_(*self._floats, 1.0 - self.decay_at(self.updates))
            for a, c in self._ints:
                a.copy_(c)
        self.n_averaged += 1  # kept for torch's state_dict layout (checkpoints)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.updates = int(self.n_averaged)  # a resumed run continues the decay's warm-up where it was
        return out

    def remove_hook(self) -> None:
        self._hook.remove()


def weight_average(model: nn.Module, optimizer: torch.optim.Optimizer, decay: float, warmup: float = 9.0
                   ) -> WeightAverage | None:
    """A :class:`WeightAverage` of ``model`` when ``decay`` > 0, else None."""
    return WeightAverage(model, optimizer, decay, warmup) if decay > 0 else None
