"""The README is short and in the order a newcomer reads it; every relative link in it and in
docs/ resolves; no prose names an issue number."""

import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
# what the study is (the title and its lines), then these, in this order
SECTIONS = [
    "Two commands",
    "What the main job produces",
    "The paper preset and a cluster",
    "Map of the code",
]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_readme_is_at_most_200_lines_with_its_sections_in_order():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert [h for h in headings if h in SECTIONS] == SECTIONS, headings
    intro = text.split("\n## ", 1)[0]
    assert intro.startswith("# ") and "docs/frontier.png" in intro  # the study and its figure
    produces = text.split("## What the main job produces", 1)[1].split("\n## ", 1)[0]
    for output in ["results/table.csv", "results/plots/", "results/samples.md", "--report"]:
        assert output in produces, output
    assert "| pi_ref |" in produces  # the default's results table


def test_every_doc_is_linked_from_the_readme():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    assert DOCS and set(DOCS) <= linked, sorted(p.name for p in set(DOCS) - linked)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    targets = relative_links(path)
    missing = [t for t in targets if not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"


def test_relative_links_finds_links_and_images_but_not_urls_or_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "[a](docs/a.md) ![b](b.png) [c](https://x.org) [d](#top)\n```\n[e](e.md)\n```\n"
    )
    assert relative_links(page) == ["docs/a.md", "b.png"]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_no_prose_names_an_issue_number(path):
    assert not re.search(r"\b[Ii]ssues? #?\d+", path.read_text())


def test_the_methods_catalogue_names_registered_methods_and_the_main_ones():
    """A row per method a reader looks up (the main table's at least); none for a method that is
    not registered. A new built-in method needs no row to run (docs/adding-a-method.md)."""
    from pipeline.methods import METHODS

    text = (REPO / "docs/methods.md").read_text()
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \(`[a-z_]+`\) \|", text, re.M))
    assert {"dpo", "cringe", "ppo"} <= rows <= set(METHODS)


def test_every_file_under_benchmarks_is_named_by_a_document():
    """A script a reader can rerun, a record a page cites: named, or matched by a name pattern
    (`main-job-*.json`), in the README or a page of docs/."""
    text = "\n".join(p.read_text() for p in [README, *DOCS])
    names = set(re.findall(r"[\w.*-]+\.(?:py|sh|json)", text))
    patterns = [n for n in names if "*" in n]
    files = [
        p for p in (REPO / "benchmarks").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]
    unnamed = [
        str(p.relative_to(REPO))
        for p in files
        if p.name not in names and not any(fnmatch.fnmatch(p.name, n) for n in patterns)
    ]
    assert unnamed == []
