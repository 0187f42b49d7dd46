"""The configuration reference, generated from the config dataclasses each time the site is built (an mkdocs hook).

configuration.md holds the line ``MARKER``; ``on_page_markdown`` replaces it with one table per recipe section and
one per registered algorithm: every key that a recipe and ``--set`` accept, with its type, default, what it allows
(its choices, the registered names it takes, or its range) and the comment its declaration carries. Read from the
code at build time, the page cannot drift from it (tests/docs/test_docs_config_page.py checks it against the keys the
override parser accepts).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import typing
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the page describes this checkout's code, whichever ssl_bench is installed
    sys.path.insert(0, ROOT)

MARKER = "<!-- config-reference -->"
SECTIONS = ("grid", "data", "model", "augment", "train", "active")
TOP_LEVEL = ("name", "description", "plugins")


def field_rules(cls: type, f: dataclasses.Field) -> tuple[tuple[Any, ...], str]:
    """(choices, range) that config class ``cls`` declares for its field ``f``, read through the declarations' own
    readers (a ``Literal`` type; a ``Range`` annotation, with its note)."""
    from ssl_bench.config_checks import field_choices, field_range

    rng = field_range(cls, f.name)
    text = "" if rng is None else f"{rng} {rng.note}".strip() if rng.note else str(rng)
    return tuple(field_choices(cls, f.name) or ()), text


def field_notes(cls: type) -> dict[str, str]:
    """The comment beside each field's declaration (or, without one, the comment lines right above it)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    lines = source.splitlines()
    notes = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        note = comments.get(node.end_lineno, "")
        if not note:  # a block of comment-only lines above the field
            above, line = [], node.lineno - 1
            while line in comments and lines[line - 1].lstrip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            note = " ".join(above)
        notes[node.target.id] = "" if note == "see above" else note  # a pointer to a module comment, not a note
    return notes


def _type(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return type(typing.get_args(tp)[0]).__name__
    return tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else str(tp).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _cell(text: Any, code: bool = False) -> str:
    """Text for a table cell: pipes escaped, and outside code spans ``<`` too (else it may open an HTML tag)."""
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text if code else text.replace("<", "&lt;")


def _code(value: Any) -> str:
    text = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value
    text = f'"{text}"' if isinstance(value, str) else text
    return f"`{_cell(text, code=True)}`"


def table(cls: type, prefix: str, named: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> list[str]:
    """A markdown table of every field of ``cls``, as ``prefix.key``; ``named`` gives the choices of fields that
    take a registered name."""
    hints, notes = typing.get_type_hints(cls), field_notes(cls)
    rows = ["| key | type | default | allowed | notes |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        choices, limit = field_rules(cls, f)
        allowed = ", ".join(_code(c) for c in choices) or (named or {}).get(f.name, "") or _cell(limit)
        aliases = f.metadata.get("aliases", {})  # older values a recipe may still give
        allowed += "".join(f"; {_code(old)} = {_code(new)}" for old, new in aliases.items())
        key = f"{prefix}.{f.name}" if prefix else f.name
        row = [f"`{key}`", _cell(_type(hints[f.name])), _code(_default(f)), allowed, _cell(notes[f.name])]
        rows.append("| " + " | ".join(row) + " |")
    return rows


def summary(cls: type) -> str:
    """The first paragraph of a config class's docstring (none for the signature dataclasses write in its place)."""
    doc = cls.__doc__ or ""
    return "" if doc.startswith(f"{cls.__name__}(") else " ".join(doc.split("\n\n")[0].split())


def reference_markdown() -> str:
    """Every section's table, then every registered algorithm's."""
    import ssl_bench.augment  # noqa: F401  (registers the policies)
    import ssl_bench.data  # noqa: F401  (registers the datasets)
    from ssl_bench import config
    from ssl_bench.algorithms import ALGORITHMS
    from ssl_bench.models import model_names
    from ssl_bench.registry import AUGMENTATIONS, DATASETS

    def names(items: list[str]) -> str:
        return ", ".join(_code(n) for n in items)

    named = {
        "data": {"dataset": names(DATASETS.names())},
        "model": {"name": names(model_names())},
        "augment": {"weak": names(AUGMENTATIONS.names()), "strong": names(AUGMENTATIONS.names())},
    }
    sections = typing.get_type_hints(config.RecipeConfig)
    out = ["## Top-level keys", "", *table(config.RecipeConfig, "", skip=(*SECTIONS, "algorithm")), ""]
    for section in SECTIONS:
        cls = sections[section]
        out += [f"## [{section}]", "", summary(cls), "", *table(cls, section, named.get(section)), ""]
    out += [
        "## [algorithm]",
        "",
        f"`algorithm.name` is one of {names(ALGORITHMS.names())}; the other keys are the named algorithm's own.",
        "",
    ]
    for name in ALGORITHMS.names():
        cfg = ALGORITHMS.get(name).Config
        out += [f"### {name}", "", summary(cfg), "", *table(cfg, "algorithm", skip=("name",)), ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: the reference in place of ``MARKER`` on the page that holds it."""
    return markdown.replace(MARKER, reference_markdown()) if MARKER in markdown else markdown
