"""Hard sharing: each group becomes one nn.Parameter set into every place it was used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sharescan.tying.groups import TieGroup

__all__ = ["share", "unique_parameter_bytes", "set_parameter"]


def set_parameter(model: Any, name: str, value: Any) -> None:
    *path, leaf = name.split(".")
    module = model
    for part in path:
        module = getattr(module, part)
    setattr(module, leaf, value)


def share(models: dict[str, Any], groups: Sequence[TieGroup]) -> None:
    """Replace each group's members by one Parameter holding their mean.

    The mean is the least-squares choice: it moves the members, in total, the
    least (sum of ||w - w_shared||^2 is smallest there).
    """
    import torch

    for g in groups:
        params = {k: dict(models[k].named_parameters(remove_duplicate=False)) for k in {k for k, _ in g.members}}
        with torch.no_grad():
            mean = torch.stack([params[k][n].detach() for k, n in g.members]).mean(0)
        shared = torch.nn.Parameter(mean.clone())
        for key, name in g.members:
            # Every name of the member's Parameter follows it: a tie the model
            # already has (an LM's embedding and head) must not be broken.
            target = params[key][name]
            for other, p in params[key].items():
                if p is target:
                    set_parameter(models[key], other, shared)


def unique_parameter_bytes(models: dict[str, Any]) -> tuple[int, int]:
    """(parameters, bytes) of every model's state, each storage counted once."""
    seen: set[int] = set()
    count = size = 0
    for model in models.values():
        for t in model.state_dict().values():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                continue
            seen.add(ptr)
            count += t.numel()
            size += t.untyped_storage().nbytes()
    return count, size
