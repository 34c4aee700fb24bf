"""``module:attribute`` specs: the attribute, or one line saying what to fix."""

from __future__ import annotations

import pytest

from sharescan.entry_points import import_entry_point
from sharescan.errors import InputError


def test_a_spec_names_the_attribute_of_its_module() -> None:
    assert import_entry_point("tests.tie_tasks:small_pair", "--task", "function", "m:f").__name__ == "small_pair"


@pytest.mark.parametrize("spec", ["tests.tie_tasks", "tests.tie_tasks:", ":small_pair"])
def test_a_spec_without_both_halves_shows_the_expected_form(spec: str) -> None:
    with pytest.raises(InputError, match=r"^--task .*: expected module:function, e.g. mypkg.train:task$"):
        import_entry_point(spec, "--task", "function", "mypkg.train:task")


@pytest.mark.parametrize(("spec", "words"), [("no_such_module_xyz:f", "No module named"), ("tests.tie_tasks:no_such_attr", "no_such_attr")])
def test_a_missing_module_or_attribute_is_one_line_naming_it(spec: str, words: str) -> None:
    with pytest.raises(InputError, match="cannot import it") as caught:
        import_entry_point(spec, "--arch", "factory", "mypkg.models:build")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_spec_that_is_not_a_dotted_name_shows_the_expected_form() -> None:
    with pytest.raises(InputError, match="expected module:factory"):
        import_entry_point("my module:build", "--arch", "factory", "mypkg.models:build")
