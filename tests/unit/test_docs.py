"""The documentation's shape: a short README with a table of contents, every relative link (and its #anchor)
pointing at something that exists, and no words from the project's history in the prose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^ *```.*?^ *```", re.S | re.M)
# "foundation model" is AWS's name for a Bedrock base model, not the project's history.
HISTORY_WORDS = re.compile(r"\b(seeds?|task-queue seed|foundation(?! models?\b)|issue \d+)\b", re.I)


def prose(page: Path) -> str:
    """The page without its fenced code blocks (links and headings there are code, not documentation)."""
    return FENCE.sub("", page.read_text())


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(match) for match in re.findall(r"^#{1,6} (.+)$", prose(page), re.M)}


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page)) if not re.match(r"[a-z]+:", target)]


def test_the_readme_is_at_most_250_lines() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_the_readme_has_a_table_of_contents_naming_each_section() -> None:
    text = prose(README)
    sections = re.findall(r"^## (.+)$", text, re.M)
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"\]\(#([^)]+)\)", contents))
    assert {anchor(section) for section in sections if section != "Contents"} <= listed


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, fragment = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no heading #{fragment} in {destination.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_no_project_history_words_in_the_prose(page: Path) -> None:
    found = sorted({match.group(0) for match in HISTORY_WORDS.finditer(page.read_text())})
    assert not found, f"{page.relative_to(ROOT)}: {found}"


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("built on the foundation", True),
        ("the foundation work", True),
        ("the task-queue seed", True),
        ("see issue 14", True),
        ("a Bedrock foundation model", False),
        ("two foundation models", False),
        ("foundationModel", False),
    ],
)
def test_the_history_word_check_flags_history_but_not_aws_terms(text: str, flagged: bool) -> None:
    assert bool(HISTORY_WORDS.search(text)) is flagged


def test_the_api_pages_error_table_is_the_codes_error_table() -> None:
    # Given the API's one error table (each code's status derives from its class)
    from functions.models.errors import error_table

    expected = {code: cls.status_code for code, cls in error_table().items()}
    # When the rows of docs/api.md's Errors table are read
    section = prose(ROOT / "docs" / "api.md").split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    documented = {code: int(status) for code, status in re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \|", section, re.M)}
    # Then every code is there with its status, and nothing else
    assert documented == expected
