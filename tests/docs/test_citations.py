"""Every citation of the docs (``docs/PAGE.md`` or ``docs/PAGE.md#anchor``) points to a page and heading that exist.

The code, recipes and tests cite the algorithm and reference pages for the facts they follow; a renamed heading or
a moved page would otherwise leave the citation pointing at nothing. The anchors are the ids MkDocs gives headings
(python-markdown's toc extension), so the slug function here is checked against that extension. A second test
checks that no citation of the former external spec files is left.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("ssl_bench", "recipes", "examples", "tests", "docs", "README.md")
TEXT_SUFFIXES = {".py", ".toml", ".csv", ".md", ".txt", ".yml", ".yaml", ".cfg", ".json", ".sh"}
SELF = Path(__file__).resolve()

CITATION = re.compile(r"(?<![\w/.-])docs/(?P<page>[\w./-]+?\.md)(?:#(?P<anchor>[\w-]+))?")
# a relative Markdown link inside docs/: [text](other.md#anchor) or [text](#anchor)
DOC_LINK = re.compile(r"\]\((?P<page>(?![a-z]+:)[^)\s#]*?\.md)?(?:#(?P<anchor>[^)\s]+))?\)")
HEADING = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$")
ATTR_ID = re.compile(r"\s*\{[^}]*#(?P<id>[\w-]+)[^}]*\}\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
# citations of the spec files that used to live outside the repository
SPEC_CITATION = re.compile(
    r"reference-algorithms(?:-2)?\.md|\bREF(?:-2)?\s?§|spec-2 §|§\s?\d|shared/docs/|\bdesign\.md\b"
)


def slugify(value: str, separator: str = "-") -> str:
    """python-markdown's toc slug: ASCII only, word characters, spaces and hyphens kept, lowercased, runs joined."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(rf"[{separator}\s]+", separator, value)


def unique(slug: str, seen: set[str]) -> str:
    """A repeated heading gets ``_1``, ``_2``, ... as in python-markdown's toc extension."""
    while slug in seen or not slug:
        m = re.match(r"^(.*)_([0-9]+)$", slug)
        slug = f"{m.group(1)}_{int(m.group(2)) + 1}" if m else f"{slug}_1"
    seen.add(slug)
    return slug


def heading_text(raw: str) -> str:
    """The text python-markdown slugs: inline code, emphasis and links reduced to their words."""
    raw = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    raw = raw.replace("`", "")
    return re.sub(r"(\*{1,2})(\S.*?)\1", r"\2", raw)


def anchors(page: Path) -> set[str]:
    seen: set[str] = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else HEADING.match(line)
        if not m:
            continue
        text = m.group("text")
        explicit = ATTR_ID.search(text)
        if explicit:
            seen.add(explicit.group("id"))
            continue
        unique(slugify(heading_text(text)), seen)
    return seen


def scanned_files(root: Path):
    for name in SCANNED:
        base = root / name
        if base.is_file():
            yield base
        elif base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                    if path.resolve() != SELF:
                        yield path


def _lines(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    yield from enumerate(text.splitlines(), 1)


def broken_citations(root: Path) -> list[str]:
    """``file:line: citation (why)`` for each ``docs/...`` citation whose page or heading is missing."""
    cache: dict[Path, set[str] | None] = {}

    def check(where: str, page: Path, anchor: str | None, cited: str) -> str | None:
        if page not in cache:
            cache[page] = anchors(page) if page.is_file() else None
        if cache[page] is None:
            return f"{where}: {cited} (no such page)"
        if anchor and anchor not in cache[page]:
            return f"{where}: {cited} (no heading with this anchor)"
        return None

    problems = []
    for path in scanned_files(root):
        rel = path.relative_to(root)
        in_docs = rel.parts[0] == "docs"
        for no, line in _lines(path):
            where = f"{rel}:{no}"
            for m in CITATION.finditer(line):
                bad = check(where, root / "docs" / m.group("page"), m.group("anchor"), m.group(0))
                if bad:
                    problems.append(bad)
            if in_docs and path.suffix == ".md":
                for m in DOC_LINK.finditer(line):
                    if not m.group("page") and not m.group("anchor"):
                        continue
                    target = (path.parent / m.group("page")).resolve() if m.group("page") else path
                    bad = check(where, target, m.group("anchor"), m.group(0)[2:-1])
                    if bad:
                        problems.append(bad)
    return problems


def spec_citations(root: Path) -> list[str]:
    """``file:line: text`` for each citation of the former external spec files still in the tree."""
    found = []
    for path in scanned_files(root):
        for no, line in _lines(path):
            m = SPEC_CITATION.search(line)
            if m:
                found.append(f"{path.relative_to(root)}:{no}: {m.group(0)}")
    return found


def test_every_docs_citation_points_to_an_existing_heading():
    problems = broken_citations(ROOT)
    assert not problems, "citations to missing docs pages or headings:\n" + "\n".join(problems[:50])


def test_no_citation_of_the_former_spec_files_is_left():
    left = spec_citations(ROOT)
    assert not left, f"{len(left)} citations of files outside the repository:\n" + "\n".join(left[:50])


def _fake_tree(tmp_path: Path, heading: str, cited: str) -> Path:
    (tmp_path / "docs" / "algorithms").mkdir(parents=True)
    (tmp_path / "docs" / "algorithms" / "x.md").write_text(f"# X\n\n## {heading}\n\nText.\n", encoding="utf-8")
    (tmp_path / "ssl_bench").mkdir()
    code = f'"""Doc."""\n\nA = 1  # see {"docs/"}{cited}\n'
    (tmp_path / "ssl_bench" / "mod.py").write_text(code, encoding="utf-8")
    return tmp_path


def test_checker_fails_on_a_missing_heading_and_names_the_line(tmp_path):
    root = _fake_tree(tmp_path, "Reference step", "algorithms/x.md#hyper-parameters")
    assert broken_citations(root) == [
        "ssl_bench/mod.py:3: docs/algorithms/x.md#hyper-parameters (no heading with this anchor)"
    ]


def test_checker_passes_when_the_heading_exists(tmp_path):
    root = _fake_tree(tmp_path, "Hyper-parameters", "algorithms/x.md#hyper-parameters")
    assert broken_citations(root) == []


def test_checker_fails_on_a_missing_page(tmp_path):
    root = _fake_tree(tmp_path, "Hyper-parameters", "algorithms/y.md")
    assert broken_citations(root) == ["ssl_bench/mod.py:3: docs/algorithms/y.md (no such page)"]


def test_checker_sees_broken_relative_links_inside_docs(tmp_path):
    root = _fake_tree(tmp_path, "State", "algorithms/x.md#state")
    (root / "docs" / "algorithms" / "y.md").write_text("# Y\n\nSee [x](x.md#gone) and [x](x.md#state).\n")
    assert broken_citations(root) == ["docs/algorithms/y.md:3: x.md#gone (no heading with this anchor)"]


def test_spec_citation_finder(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "a.toml").write_text("x = 1  # fine\ny = 2  # REF " + "§1.6\n", encoding="utf-8")
    assert spec_citations(tmp_path) == ["recipes/a.toml:2: REF §"]


@pytest.mark.parametrize(
    "heading, slug",
    [
        ("Hyper-parameters", "hyper-parameters"),
        ("In ssl_bench", "in-ssl_bench"),
        ("Open points: Google code", "open-points-google-code"),
        ("RandAugment (FixMatch)", "randaugment-fixmatch"),
        ("WRN-28-k", "wrn-28-k"),
        ("Dash, SimMatch and CoMatch", "dash-simmatch-and-comatch"),
        ("Π-Model", "-model"),
        ("  Spaces   and -- hyphens ", "spaces-and-hyphens"),
    ],
)
def test_slug_golden(heading, slug):
    assert slugify(heading) == slug


def test_slug_agrees_with_python_markdown(tmp_path):
    markdown = pytest.importorskip("markdown")
    from markdown.extensions.toc import slugify as md_slugify

    headings = ["Reference step", "USB order", "Open points: second wave", "TorchSSL versus USB", "Π-Model", "A/B (x)"]
    for h in headings:
        assert slugify(h) == md_slugify(h, "-")
    # repeated headings: the ids python-markdown renders equal ours
    text = "# T\n\n## Notes\n\n## Notes\n\n### Notes\n\n## `code` and *emphasis*\n"
    md = markdown.Markdown(extensions=["toc"])
    md.convert(text)
    ids = set()

    def walk(tokens):
        for t in tokens:
            ids.add(t["id"])
            walk(t["children"])

    walk(md.toc_tokens)
    page = tmp_path / "p.md"
    page.write_text(text, encoding="utf-8")
    assert anchors(page) == ids == {"t", "notes", "notes_1", "notes_2", "code-and-emphasis"}
