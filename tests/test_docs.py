"""README's configuration table and .env.example list exactly the settings in app.config."""

from __future__ import annotations

import re

import pytest

from app.config import SETTINGS
from scripts import gen_config_docs
from scripts.gen_config_docs import BEGIN, END

ROOT = gen_config_docs.ROOT
NAMES = [setting.name for setting in SETTINGS]
STALE = "out of date: run `make docs` (scripts/gen_config_docs.py) after changing app/config.py"


def readme_table_names() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "README.md needs one pair of config-table markers"
    table = text[text.index(BEGIN):text.index(END)]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, flags=re.MULTILINE)


def env_example_names() -> list[str]:
    text = (ROOT / ".env.example").read_text()
    return re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)


def test_readme_table_lists_every_setting_once_in_order():
    assert readme_table_names() == NAMES, f"README.md configuration table is {STALE}"


def test_env_example_lists_every_setting_once_in_order():
    assert env_example_names() == NAMES, f".env.example is {STALE}"


def test_generated_files_match_the_generator():
    assert gen_config_docs.main(["--check"]) == 0, STALE


def test_every_setting_has_help_in_both_files():
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert setting.help in example
        assert gen_config_docs._cell(setting.help) in readme


def test_update_readme_keeps_everything_outside_the_markers():
    text = f"# Title\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\n## Operator API\nafter\n"
    updated = gen_config_docs.update_readme(text)
    assert updated.startswith("# Title\n\nbefore\n\n")
    assert updated.endswith("\n\n## Operator API\nafter\n")
    assert "old table" not in updated
    assert gen_config_docs.update_readme(updated) == updated


def test_update_readme_without_markers_is_an_error():
    with pytest.raises(ValueError, match="markers"):
        gen_config_docs.update_readme("# README without a table\n")


def test_secrets_have_no_default_in_env_example():
    example = gen_config_docs.env_example()
    for setting in SETTINGS:
        if setting.secret:
            assert f"\n{setting.name}=\n" in example
