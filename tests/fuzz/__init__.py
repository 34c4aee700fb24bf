"""Seeded fuzz cases for sharescan's bad-input contract.

``cases`` lists every case (ids, classes, parameters) without touching disk;
``builders`` makes one case's files; ``worker`` runs many cases in one Python
that imports sharescan once; ``runner`` starts workers, watches them for hangs
and crashes, and collects one result per case.
"""
