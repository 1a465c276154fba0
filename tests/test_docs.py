"""The README is part of the product: every setting and every environment variable is documented."""

from __future__ import annotations

import re
from pathlib import Path

from buzzi.config import SPEC_ENV, load_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    settings = load_settings(env={})
    for section in vars(settings):
        for key in vars(getattr(settings, section)):
            assert f"`{section}.{key}`" in README, f"{section}.{key} is not documented"


def test_every_contract_env_var_is_in_the_readme():
    for name in SPEC_ENV:
        assert name in README, name


def test_widget_stays_under_15_kb():
    assert (ROOT / "static" / "widget.js").stat().st_size < 15 * 1024


def test_readme_images_exist():
    for image in re.findall(r"\]\((docs/[^)]+\.png)\)", README):
        assert (ROOT / image).exists(), image
