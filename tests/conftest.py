from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--overwrite", action="store_true", help="rewrite golden report files instead of comparing")


@pytest.fixture
def overwrite(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--overwrite"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one pytest-xdist worker (with --dist loadgroup)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The fuzz cases share one session fixture that runs every selected case
    # through its own worker processes. Under pytest-xdist each worker has its
    # own session: kept on one worker, the cases run once, not once per worker.
    for item in items:
        if "fuzz_results" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("fuzz"))


@pytest.fixture(autouse=True)
def _no_inherited_terminal_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-xdist workers start with COLUMNS=80 and LINES=24 in their
    # environment; a plain pytest run has neither. Tests that care about the
    # width set COLUMNS themselves, so every run sees the same environment.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture(autouse=True)
def _module_generator_seeded_per_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Test modules draw their data from a module-level numpy Generator `rng`.
    # Shared across a module, its state depended on which tests had run before
    # on the same worker (pytest-xdist splits modules), so a data-dependent
    # case could pass alone and fail in CI. Each test gets a fresh generator
    # seeded from its own id: the same data whatever ran before.
    import zlib

    import numpy as np

    module = request.module
    if isinstance(getattr(module, "rng", None), np.random.Generator):
        monkeypatch.setattr(module, "rng", np.random.default_rng(zlib.crc32(request.node.nodeid.encode())))
