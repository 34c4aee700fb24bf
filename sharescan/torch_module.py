"""A PyTorch model as an ``nn.Module`` (or ``torch.export`` program), for export and tie.

Reads TorchScript, ``torch.export`` programs (.pt2), or a state dict with
``arch="module:factory"`` (which imports the user's code: an explicit
opt-in). TorchScript and .pt2 run code from the file when loaded, so they
need ``trust_code``; a damaged archive is refused the same way either way.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from sharescan.entry_points import import_entry_point
from sharescan.errors import InputError, one_line

__all__ = ["load_module"]


def load_module(path: Path, arch: str | None = None, trust_code: bool = False) -> Any:
    """The model stored at ``path``: an ``nn.Module``, a ScriptModule or an ``ExportedProgram``.

    Args:
        path: a TorchScript archive, a .pt2 program, or a PyTorch checkpoint
            (a pickled module, or a state dict).
        arch: ``module:factory`` building the model a state dict belongs to.
        trust_code: allow loading archives and pickles that run code.

    Raises:
        InputError: one line saying what is wrong with the file or ``arch``.
    """
    import torch

    from sharescan.sources import detect_format
    from sharescan.sources.torch_source import torch_load, walk_tensors

    fmt = detect_format(path)
    if fmt in ("torchscript", "torch.export"):
        return _program(path, fmt, trust_code)
    if fmt != "pytorch":
        raise InputError(f"{path}: export reads TorchScript, .pt2 or a PyTorch state dict (with --arch), not {fmt}")
    obj = torch_load(path, trust_code)
    if isinstance(obj, torch.nn.Module):
        return obj
    if arch is None:
        raise InputError(f"{path}: a state dict needs --arch module:factory to build the model it belongs to")
    factory = import_entry_point(arch, "--arch", "factory", "mypkg.models:build")
    try:
        model = factory()
    except Exception as e:  # the user's code: any failure is theirs to fix
        raise InputError(f"--arch {arch}: calling it failed ({e.__class__.__name__}: {one_line(e)}); it must build the model with no arguments") from None
    state = dict(walk_tensors(obj, ""))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = one_line("\n".join(str(e).splitlines()[1:]))  # the first line only names the class
        raise InputError(f"{path}: does not fit --arch {arch} ({detail or one_line(e)})") from None
    return model


def _program(path: Path, fmt: str, trust_code: bool) -> Any:
    """A TorchScript module or a torch.export program: loading either runs code from the file."""
    import torch

    from sharescan.sources import torch_archive
    from sharescan.sources.torch_source import first_line

    # Read without running first: a damaged archive is refused the same way with or without trust.
    if fmt == "torchscript":
        torch_archive.load_torchscript_archive(path, 0)
    else:
        torch_archive.load_pt2_archive(path, 0)
    what = "TorchScript archive" if fmt == "torchscript" else "torch.export program"
    if not trust_code:
        raise InputError(f"{path}: loading a {what} runs code from the file; pass --trust-code only if you trust where it came from")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # torch logs a traceback of its own for a bad archive
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated; reading it is still the point
            if fmt == "torchscript":
                return torch.jit.load(str(path), map_location="cpu")
            return torch.export.load(str(path))  # exported as it is, by the dynamo exporter
    except Exception as e:  # torch raises many types for an archive it cannot load
        raise InputError(f"{path}: torch could not load this {what} ({e.__class__.__name__}: {first_line(e)}); re-save it") from None
    finally:
        logging.disable(previous)
