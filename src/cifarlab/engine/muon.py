"""Muon for the convolution and linear weights, SGD with momentum for everything else, as one optimizer.

airbench's record recipe (Keller Jordan) orthogonalises the momentum of every conv filter bank, flattened to a
matrix of ``out_channels`` rows (``g.reshape(len(g), -1)``), and leaves the norms, biases and the head to SGD. This
module does the same with torch's own ``torch.optim.Muon`` (which accepts only 2-D parameters): every matrix-shaped
weight gets a 2-D alias that shares its storage, so torch's Muon updates the real weight in place, and
``torch.optim.SGD`` takes the rest. From the outside it is one ``torch.optim.Optimizer``: the loop sets each group's
``lr`` every step, ``step``/``zero_grad``/``state_dict``/``load_state_dict`` cover both parts, and step hooks (the
weight EMA) fire once per step.

airbench also renormalises each filter after every step; that is not done here (torch's Muon applies decoupled
weight decay instead), so this is torch's Muon on conv filters, not airbench's optimizer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _matrix_alias(p: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A 2-D tensor of ``p.shape[0]`` rows that shares ``p``'s storage, and whether its columns are in
    channels-last order (a channels_last conv weight is contiguous as (out, kh, kw, in), not as (out, in, kh, kw)).

    Permuting the columns of a matrix permutes the columns of its orthogonalisation the same way, so either order
    gives the same update."""
    rows = p.shape[0]
    if p.is_contiguous():
        return p.detach().view(rows, -1), False
    if p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last):
        return p.detach().permute(0, 2, 3, 1).view(rows, -1), True  # (O, I, kh, kw) stored as (O, kh, kw, I)
    raise ValueError(f"Muon needs a dense weight to update in place; got shape {tuple(p.shape)} with strides "
                     f"{p.stride()}")


def _as_matrix(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` (a gradient) as a matrix whose columns are in the order of its parameter's alias."""
    return (t.permute(0, 2, 3, 1) if channels_last else t).reshape(t.shape[0], -1)


class MuonSGD(torch.optim.Optimizer):
    """torch's Muon on the matrix-shaped weights of each group, torch's SGD on the others.

    Each input group is split in two: its parameters with ``ndim >= 2`` form a Muon group, the rest an SGD group;
    a group named ``"head"`` (``param_groups(..., name="head")``) or marked ``"muon": False`` stays whole on SGD.
    Both keep the input group's other keys (``weight_decay``, ``lr_scale``, ...), so a loop that sets
    ``g["lr"] = peak * g["lr_scale"] * factor`` on every group drives both. ``muon_lr_scale`` multiplies the Muon
    groups' ``lr_scale`` (Muon's step is orthogonalised, so its useful rate differs from SGD's).
    """

    def __init__(self, groups: list[dict], momentum: float, nesterov: bool, muon_lr_scale: float = 1.0) -> None:
        split: list[dict] = []
        for g in groups:
            extra = {k: v for k, v in g.items() if k not in ("params", "muon")}
            params = list(g["params"])
            # the classifier head stays on SGD, as in airbench (and Muon's own advice for output layers)
            mats = [p for p in params if p.ndim >= 2] if g.get("muon", g.get("name") != "head") else []
            rest = [p for p in params if p.ndim < 2] if mats else params
            if mats:
                split.append({**extra, "params": mats, "muon": True,
                              "lr_scale": extra.get("lr_scale", 1.0) * muon_lr_scale})
            if rest:
                split.append({**extra, "params": rest, "muon": False})
        if not split:
            raise ValueError("MuonSGD got no parameters")
        super().__init__(split, {"lr": 1e-3, "weight_decay": 0.0, "lr_scale": 1.0})
        self._aliases: list[list[tuple[nn.Parameter, bool]]] = []
        for g in self.param_groups:
            if g["muon"]:
                # nn.Parameter over an alias shares the weight's storage: Muon's in-place update is the weight's
                self._aliases.append([(nn.Parameter(a), cl) for a, cl in map(_matrix_alias, g["params"])])
        muon_groups = [{"params": [q for q, _ in row]} for row in self._aliases]
        sgd_groups = [{"params": g["params"]} for g in self.param_groups if not g["muon"]]
        self._muon = torch.optim.Muon(muon_groups, momentum=momentum, nesterov=nesterov) if muon_groups else None
        self._sgd = torch.optim.SGD(sgd_groups, lr=1e-3, momentum=momentum,
                                    nesterov=nesterov and momentum > 0) if sgd_groups else None

    def _inner_groups(self) -> list[tuple[dict, dict]]:
        """(outer group, the inner optimizer's group it drives), in order."""
        muon = iter(self._muon.param_groups if self._muon else [])
        sgd = iter(self._sgd.param_groups if self._sgd else [])
        return [(g, next(muon) if g["muon"] else next(sgd)) for g in self.param_groups]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for outer, inner in self._inner_groups():
            inner["lr"], inner["weight_decay"] = outer["lr"], outer["weight_decay"]
        for row, g in zip(self._aliases, (g for g in self.param_groups if g["muon"])):
            for (q, channels_last), p in zip(row, g["params"]):
                # the alias's gradient in its column order (a copy where the layouts differ; read only)
                q.grad = None if p.grad is None else _as_matrix(p.grad, channels_last)
        for opt in (self._muon, self._sgd):
            if opt is not None:
                opt.step()
        for row in self._aliases:
            for q, _ in row:
                q.grad = None
        return loss

    def state_dict(self) -> dict[str, Any]:  # noqa: D102 - torch.optim.Optimizer.state_dict
        return {"groups": super().state_dict(),
                "muon": self._muon.state_dict() if self._muon else None,
                "sgd": self._sgd.state_dict() if self._sgd else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        if set(state_dict) != {"groups", "muon", "sgd"}:
            raise ValueError(f"not a MuonSGD state dict (keys: {sorted(state_dict)})")
        super().load_state_dict(state_dict["groups"])
        for opt, key in ((self._muon, "muon"), (self._sgd, "sgd")):
            if (opt is None) != (state_dict[key] is None):
                raise ValueError(f"MuonSGD state dict: the saved optimizer had a different {key} part")
            if opt is not None:
                opt.load_state_dict(state_dict[key])


def make_muon(groups: list[dict], momentum: float, nesterov: bool, muon_lr_scale: float = 1.0
              ) -> torch.optim.Optimizer:
    """One optimizer: torch's Muon for the >= 2-D (conv, linear) weights, SGD with momentum for the rest.

    Args:
        groups: parameter groups, each with ``params``, ``weight_decay`` and ``lr_scale``; a group named
            ``"head"`` or marked ``"muon": False`` stays on SGD.
        momentum: momentum of both parts (Muon's is an EMA of gradients, SGD's a sum: torch's definitions).
        nesterov: Nesterov momentum for both parts.
        muon_lr_scale: multiplies the Muon groups' ``lr_scale``.

    Returns:
        A :class:`MuonSGD`; the rate given here is a placeholder, the loop sets every group's ``lr`` each step.
    """
    return MuonSGD(groups, momentum, nesterov, muon_lr_scale)
