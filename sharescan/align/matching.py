"""Weight matching: the permutation of B's hidden units that brings B's weights closest to A's.

For one site with the others held fixed, the best permutation maximises
sum_i <A[unit i], B[unit p(i)]> over every tensor indexed by the site's
units (the producers' rows and biases, a head's block of rows, its BatchNorm's weight and bias, the
consumers' input columns), a linear assignment problem that
``scipy.optimize.linear_sum_assignment`` solves exactly. Sites interact
through the layers between them, so they are solved in turn (coordinate
descent) until a whole pass changes nothing, from several random starts and
orders; the best total similarity wins (Ainsworth et al., Git Re-Basin,
2023, section 3.2). Pure numpy: state dicts in, permutations out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sharescan.align.graph import Site

__all__ = ["Matching", "permute", "weight_matching", "similarity"]

logger = logging.getLogger(__name__)

State = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Matching:
    perms: dict[str, np.ndarray]  # site producer -> B's unit placed at each position (new_B[i] = B[perm[i]])
    similarity: float  # sum over all tensors of <A, permuted B>: higher is closer
    passes: int  # coordinate-descent passes of the winning start
    starts: int  # starts tried


def _indexed(site: Site, state: State) -> list[tuple[str, int, int]]:
    """(tensor name, unit axis, spatial size) of every tensor the site's units index."""
    out = []
    for p in site.producers:  # a head's rows are a block of `site.block` consecutive rows
        out += [(f"{p}.{t}", 0, site.block) for t in ("weight", "bias") if f"{p}.{t}" in state]
    for n in site.norms:
        out += [(f"{n}.{t}", 0, 1) for t in ("weight", "bias", "running_mean", "running_var")]
    out += [(f"{c.module}.weight", 1, c.spatial) for c in site.consumers]
    return out


def _matched(site: Site) -> set[str]:
    """Names whose values count in the matching cost; running statistics are permuted but not matched."""
    return {f"{p}.{t}" for p in site.producers for t in ("weight", "bias")} | {f"{n}.{t}" for n in site.norms for t in ("weight", "bias")} | {f"{c.module}.weight" for c in site.consumers}


def _units_view(t: np.ndarray, axis: int, spatial: int, units: int) -> np.ndarray:
    """The tensor as (units, everything else)."""
    if axis == 0:
        return t.reshape(units, -1)
    t = t.reshape(t.shape[0], units, spatial, *t.shape[2:]) if spatial > 1 else t
    return np.moveaxis(t, 1, 0).reshape(units, -1)


def _take(t: np.ndarray, axis: int, spatial: int, units: int, perm: np.ndarray) -> np.ndarray:
    if axis == 0:  # rows: each unit owns a block of consecutive rows (one row unless a head)
        return t.reshape(units, -1)[perm].reshape(t.shape)
    if spatial > 1:  # a Linear after Flatten: each unit owns `spatial` consecutive columns
        return t.reshape(t.shape[0], units, spatial)[:, perm].reshape(t.shape)
    return t[:, perm]


def permute(state: State, sites: list[Site], perms: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` with each site's units reordered by ``perms`` (sites not named are left as they are)."""
    out = dict(state)
    for s in sites:
        if s.producer in perms:
            for name, axis, spatial in _indexed(s, out):
                out[name] = _take(out[name], axis, spatial, s.units, perms[s.producer])
    return out


def similarity(a: State, b: State) -> float:
    """sum over shared names of <a, b>: with norms fixed by a permutation, maximising it minimises ||a - b||^2."""
    return float(sum(np.vdot(a[k].astype(np.float64), b[k].astype(np.float64)) for k in a if k in b and a[k].dtype.kind == "f"))


def _solve(site: Site, a: State, b: State) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    matched = _matched(site)
    cost = np.zeros((site.units, site.units))
    for name, axis, spatial in _indexed(site, a):
        if name in matched:
            cost += _units_view(a[name], axis, spatial, site.units).astype(np.float64) @ _units_view(b[name], axis, spatial, site.units).astype(np.float64).T
    _, cols = linear_sum_assignment(cost, maximize=True)
    return np.asarray(cols)


def weight_matching(a: State, b: State, sites: list[Site], starts: int = 4, max_passes: int = 100, seed: int = 0, one_pass: bool = False) -> Matching:
    """Permutations of B's sites that maximise its similarity to A.

    Args:
        starts: coordinate-descent runs: the first from B as it is, the rest
            from random permutations; each visits the sites in a random order
            every pass. The best total similarity wins.
        one_pass: a single pass over the sites in graph order from B as it is
            (the plain alternating scheme, for comparison).
    """
    rng = np.random.default_rng(seed)
    best: Matching | None = None
    for start in range(1 if one_pass else max(1, starts)):
        perms = {s.producer: (np.arange(s.units) if start == 0 else rng.permutation(s.units)) for s in sites}
        current = permute(b, sites, perms)
        passes, changed = 0, True
        while changed and passes < (1 if one_pass else max_passes):
            passes += 1
            changed = False
            order = range(len(sites)) if one_pass else rng.permutation(len(sites))
            for k in order:
                s = sites[k]
                q = _solve(s, a, current)
                if not np.array_equal(q, np.arange(s.units)):
                    changed = True
                    current = permute(current, [s], {s.producer: q})
                    perms[s.producer] = perms[s.producer][q]
        total = similarity(a, current)
        logger.debug("start %d: %d passes, similarity %.6g", start, passes, total)
        if best is None or total > best.similarity + 1e-9 * abs(total):
            best = Matching(dict(perms), total, passes, start + 1)
    assert best is not None
    return Matching(best.perms, best.similarity, best.passes, 1 if one_pass else max(1, starts))
