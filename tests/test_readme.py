"""The README's tables are generated from minicam's records, and stay so.

The method table comes from minicam.cam.REGISTRY (method_table()), the conventions
table from minicam.cam.PRESETS (preset_table()): a record changed without
regenerating the README fails here, with the command that fixes it.
"""
from pathlib import Path

import pytest

from minicam.cam import PRESETS, REGISTRY, explain
from minicam.cam.conventions import preset_table
from minicam.cam.registry import method_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
FIX = ("regenerate it: python -c \"from minicam.cam.registry import method_table; print(method_table())\" "
       "(or conventions.preset_table) and paste the output over the README's table")


@pytest.mark.parametrize("name, table", [("method", method_table), ("preset", preset_table)])
def test_readme_table_is_the_records(name, table):
    assert table() in README, f"README.md's {name} table differs from the records; {FIX}"


def test_every_record_is_a_row_and_explain_lists_every_preset():
    for name, method in REGISTRY.items():
        assert f"| `{name}` | {method.paper} |" in README
    for name, preset in PRESETS.items():
        assert f"| `{name}` | {preset.relu} |" in README
        assert f"{name:<17} {preset.note}" in explain.__doc__
