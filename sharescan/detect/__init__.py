"""Relations: one module each, holding its detector, ONNX rewrite and byte accounting.

A detector is a pure function from entries (and their digests) to groups: it
never opens a file, and reads tensors only through the entries' lazy
``read`` to confirm candidates that the digests proposed. ``relation``
describes what each module provides; ``search`` holds the candidate searches
several relations use, so no relation imports another.
"""

from __future__ import annotations

from sharescan.detect import aliased, identical, near, negated, permuted, rows, scaled, transposed
from sharescan.detect.aliased import find_aliased
from sharescan.detect.identical import find_identical
from sharescan.detect.negated import find_negated
from sharescan.detect.relation import Relation
from sharescan.detect.scaled import find_scaled
from sharescan.detect.transposed import find_transposed

__all__ = ["RELATIONS", "relation_named", "find_aliased", "find_identical", "find_transposed", "find_negated", "find_scaled"]

# THE list of relations. Detection runs in this order, each over the tensors
# no earlier relation claimed, so no byte is reclaimed twice; reports list the
# per-relation totals in this order. Callers read it at call time
# (``detect.RELATIONS``), so one entry here is all a new relation needs.
RELATIONS: tuple[Relation, ...] = (
    aliased.RELATION,
    identical.RELATION,
    transposed.RELATION,
    negated.RELATION,
    scaled.RELATION,
    permuted.RELATION,  # exact, so before near: a permuted copy is not near its original
    near.RELATION,
    rows.RELATION,
)


def relation_named(name: str) -> Relation:
    """The registered relation of this name (a group's or a merge's ``relation``)."""
    for relation in RELATIONS:
        if relation.name == name:
            return relation
    raise KeyError(name)
