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


# ---- links: the project's docs are its own (docs/), and every relative link lands on a file

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SKIPPED_DIRS = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
OUTSIDE = "../" + "shared/"  # split so that this file does not point there itself


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", h.strip().lower())) for h in headings}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code samples are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_docs_exist() -> None:
    for name in ("contract.md", "channels.md", "operations.md", "architecture.md"):
        assert (ROOT / "docs" / name).is_file(), name


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    broken = []
    for doc in DOCS:
        for target in relative_links(doc):
            file_part, _, anchor = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            if not linked.exists() or ROOT not in linked.parents:
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_channel_notes_keep_the_section_numbers_the_code_cites() -> None:
    notes = (ROOT / "docs" / "channels.md").read_text()
    for number in [*map(str, range(11)), "8a"]:
        assert re.search(rf"^## {number}\. ", notes, re.M), f"docs/channels.md has no section {number}"


def test_nothing_points_outside_the_repository_for_its_docs() -> None:
    offenders = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.is_dir() or SKIPPED_DIRS.intersection(parts) or any(p.endswith(".egg-info") for p in parts):
            continue  # tools' and builds' own files
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary files (screenshots, databases)
        if OUTSIDE in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"{offenders} point at {OUTSIDE}, which a clone does not have: use docs/"
