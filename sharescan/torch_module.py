"""A PyTorch model as an ``nn.Module`` (or ``torch.export`` program), for export and tie.

Reads TorchScript, ``torch.export`` programs (.pt2), or a state dict with
``arch="module:factory"`` (which imports the user's code: an explicit
opt-in). TorchScript and .pt2 run code from the file when loaded, so they
need ``trust_code``; a damaged archive is refused the same way either way.

A transformers model folder (``config.json`` beside its weights), a
``models--org--name`` cache folder or an ``org/name`` repo id in the local
cache is built by transformers' own code for its architecture
(``AutoModelForCausalLM``, else ``AutoModel``), offline. A config whose
``auto_map`` asks for code shipped with the model needs ``trust_code``.
"""


from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sharescan.entry_points import import_entry_point
from sharescan.errors import InputError, one_line

__all__ = ["load_module", "hf_folder", "is_transformers_model", "input_names", "model_output", "HF_EXTRA"]

HF_EXTRA = "pip install 'sharescan[hf]'"


def load_module(path: Path | str, arch: str | None = None, trust_code: bool = False) -> Any:
    """The model stored at ``path``: an ``nn.Module``, a ScriptModule or an ``ExportedProgram``.

    Args:
        path: a TorchScript archive, a .pt2 program, a PyTorch checkpoint
            (a pickled module, or a state dict), a transformers model folder,
            a ``models--org--name`` cache folder or an ``org/name`` repo id.
        arch: ``module:factory`` building the model a state dict belongs to.
        trust_code: allow loading archives and pickles that run code, and
            transformers models whose config asks for their own code.

    Raises:
        InputError: one line saying what is wrong with the file or ``arch``.
    """
    import torch

    from sharescan.sources import detect_format
    from sharescan.sources.torch_source import torch_load, walk_tensors

    folder = hf_folder(str(path))
    if folder is not None:
        if arch is not None:
            raise InputError(f"{path}: a transformers model folder is built from its config.json; leave out --arch (it is for a state dict file)")
        return _transformers_model(folder, str(path), trust_code)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
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


def hf_folder(source: str) -> Path | None:
    """The transformers model folder ``source`` names, or None for a file.

    A folder holding ``config.json``; a ``models--org--name`` cache folder (its
    ``refs/main`` snapshot); an ``org/name`` or ``hf://`` repo id that is no
    existing path, read from the local cache only.
    """
    from sharescan.sources.hf import cache_folder_snapshot, is_cache_folder, repo_ref, resolve_repo

    path = Path(source)
    if path.is_dir():
        folder = cache_folder_snapshot(path) if is_cache_folder(path) else path
    elif path.exists():
        return None
    else:
        ref = repo_ref(source)
        if ref is None:
            return None  # a missing file: load_module says so
        folder = resolve_repo(ref, source)
    if not (folder / "config.json").is_file():
        raise InputError(f"{source}: a folder is read as a transformers model, and {folder} has no config.json; pass the model file, or the folder save_pretrained wrote")
    return folder


def is_transformers_model(model: Any) -> bool:
    """A model built by transformers (exported with the dynamo exporter; its config ties heads)."""
    return type(model).__module__.startswith("transformers.") and hasattr(model, "config")


def input_names(model: Any) -> frozenset[str] | None:
    """The names ``model``'s forward takes as keywords, or None where it takes inputs by position only."""
    import torch

    if not isinstance(model, torch.nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in kinds)


def model_output(out: Any) -> Any:
    """The tensor a model's output stands for: ``logits`` of a ModelOutput or dict, else its first tensor."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        values: Any = list(out.values())
    elif isinstance(out, (tuple, list)):
        values = out
    else:
        raise InputError(f"the model returned {type(out).__name__}; it must return a tensor, a tuple of tensors, a dict or a ModelOutput")
    for v in values:
        if isinstance(v, torch.Tensor):
            return v
    raise InputError(f"the model returned a {type(out).__name__} holding no tensor; it must return a tensor, a dict or a ModelOutput")


def _transformers_model(folder: Path, shown: str, trust_code: bool) -> Any:
    """Build the model ``folder/config.json`` describes with transformers, from the folder only (offline)."""
    try:
        config = json.loads((folder / "config.json").read_bytes())
    except (OSError, ValueError) as e:
        raise InputError(f"{folder / 'config.json'}: unreadable ({e.__class__.__name__}); save the model again with save_pretrained") from None
    if not isinstance(config, dict):
        raise InputError(f"{folder / 'config.json'}: not a JSON object; save the model again with save_pretrained")
    if config.get("auto_map") and not trust_code:
        raise InputError(f"{shown}: config.json's auto_map asks for code shipped with the model (trust_remote_code); pass --trust-code only if you trust where it came from")
    try:
        import transformers
    except ImportError:
        raise InputError(f"{shown}: building a Hugging Face model needs transformers: {HF_EXTRA}") from None
    with _quiet_transformers():
        try:
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_code)
            except ValueError as e:  # not a causal LM (an encoder, a vision model): its bare model
                if "Unrecognized configuration class" not in str(e):
                    raise
                model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_code)
        except InputError:
            raise
        except Exception as e:  # transformers raises many types for a folder it cannot build
            text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise InputError(f"{shown}: transformers could not build this model ({e.__class__.__name__}: {text}); check config.json and the weights beside it") from None
    # The key/value cache is for generation; an export or a distillation step wants the logits alone.
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.eval()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints progress bars and config advice on stderr: keep stderr for sharescan's own lines."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
