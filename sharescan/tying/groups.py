"""Which parameters to tie: from a spec (patterns or a JSON file) or from analyze's candidates."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharescan.errors import InputError

__all__ = ["TieGroup", "parse_spec", "groups_from_candidates", "model_keys"]


@dataclass(frozen=True)
class TieGroup:
    members: tuple[tuple[str, str], ...]  # (model key, parameter name)

    def label(self) -> str:
        return " = ".join(f"{k}:{n}" for k, n in self.members)


def model_keys(count: int) -> list[str]:
    return [chr(ord("A") + k) for k in range(count)]


def _match(rule: str, params: dict[str, dict[str, Any]]) -> list[list[tuple[str, str]]]:
    """'A:features.* = B:features.*' -> one member list per parameter the patterns match in order."""
    sides = [s.strip() for s in rule.split("=")]
    if len(sides) < 2:
        raise InputError(f"--groups {rule!r}: expected KEY:PATTERN = KEY:PATTERN [= ...], e.g. A:features.* = B:features.*")
    columns = []
    for side in sides:
        key, _, pattern = side.partition(":")
        if key not in params or not pattern:
            raise InputError(f"--groups {rule!r}: {side!r} must be KEY:PATTERN with KEY one of {', '.join(params)}")
        names = [n for n in params[key] if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise InputError(f"--groups {rule!r}: {side!r} matches no parameter of model {key}")
        columns.append([(key, n) for n in names])
    if len({len(c) for c in columns}) != 1:
        raise InputError(f"--groups {rule!r}: the patterns match different numbers of parameters ({', '.join(str(len(c)) for c in columns)})")
    return [list(members) for members in zip(*columns)]


def parse_spec(spec: str, params: dict[str, dict[str, Any]]) -> list[TieGroup]:
    """A rule ('A:x.* = B:x.*'), several rules separated by ';', or a JSON file of member lists."""
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        try:
            raw = json.loads(path.read_text())
            member_lists = [[tuple(m.split(":", 1)) for m in group] for group in raw["groups"]]
            if not all(isinstance(g, list) and all(len(m) == 2 for m in g) for g in raw["groups"]) or not all(len(m) == 2 for g in member_lists for m in g):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{spec}: expected {{\"groups\": [[\"A:name\", \"B:name\"], ...]}}") from None
    else:
        member_lists = [m for rule in spec.split(";") if rule.strip() for m in _match(rule, params)]
    groups = [TieGroup(tuple((k, n) for k, n in members)) for members in member_lists]
    seen: dict[tuple[str, str], str] = {}
    for g in groups:
        _validate(g, params)
        for member in g.members:
            if member in seen:
                raise InputError(f"{member[0]}:{member[1]} is in two groups ({seen[member]} and {g.label()}); list all its members in one group")
            seen[member] = g.label()
    return groups


def _validate(group: TieGroup, params: dict[str, dict[str, Any]]) -> None:
    if len(group.members) < 2 or len(set(group.members)) != len(group.members):
        raise InputError(f"group {group.label()}: needs two or more distinct members")
    tensors = []
    for key, name in group.members:
        if key not in params or name not in params[key]:
            raise InputError(f"group {group.label()}: {key}:{name} is not a parameter of model {key}")
        tensors.append(params[key][name])
    first = tensors[0]
    for (key, name), t in zip(group.members, tensors):
        if not t.dtype.is_floating_point:
            raise InputError(f"group {group.label()}: {key}:{name} is {t.dtype}; only float parameters can be tied")
        if t.shape != first.shape or t.dtype != first.dtype:
            raise InputError(f"group {group.label()}: {key}:{name} is {tuple(t.shape)} {t.dtype}, the first member {tuple(first.shape)} {first.dtype}")


def groups_from_candidates(candidates: list[Any], paths: list[str], params: dict[str, dict[str, Any]], limit: int) -> list[TieGroup]:
    """The first not-yet-shared pairs in analyze's candidate order (same shape, not transposed)."""
    keys = dict(zip(paths, model_keys(len(paths))))
    groups, used = [], set()
    for c in candidates:
        if c.transposed:
            continue
        a, b = (keys[c.a.model], c.a.name), (keys[c.b.model], c.b.name)
        if a in used or b in used or a[1] not in params[a[0]] or b[1] not in params[b[0]]:
            continue
        used.update([a, b])
        groups.append(TieGroup((a, b)))
        if len(groups) >= limit:
            break
    if not groups:
        raise InputError("--auto found no same-shape pair within tying distance (relative distance 0.5); give --groups explicitly")
    return groups
