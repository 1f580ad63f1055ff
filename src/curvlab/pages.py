"""The one HTML page builder: a title, headed sections, tables of key numbers and embedded figures.
Run, sweep and reproduction reports are all built from these pieces."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px}figure{display:inline-block;margin:8px}img{max-width:520px}"
)


def text(value: Any) -> str:
    """A value as escaped HTML text (floats to 4 significant digits)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return html.escape(str(value))


def table(rows: Sequence[dict]) -> str:
    """Rows of {column: value} as a table; the columns are every key, in first-seen order."""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    head = "<tr>" + "".join(f"<th>{text(c)}</th>" for c in cols) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{text(row.get(c, ''))}</td>" for c in cols) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def items(sentences: Iterable[str]) -> str:
    """Sentences as a bulleted list."""
    return "<ul>" + "".join(f"<li>{text(x)}</li>" for x in sentences) + "</ul>"


def figures(paths: Iterable[Any], width: int | None = None) -> str:
    """Each figure (a path relative to the page) embedded with its name as the caption; ``width`` (pixels) lets a
    wide figure be shown wider than the default."""
    size = f' style="max-width:{width}px"' if width else ""
    return "\n".join(
        f'<figure><img src="{html.escape(str(p))}" alt="{html.escape(_stem(p))}"{size}>'
        f"<figcaption>{html.escape(_stem(p))}</figcaption></figure>"
        for p in paths
    )


def page(title: str, sections: Sequence[tuple[str, str]], intro: str = "") -> str:
    """A complete HTML page: the title, an optional intro (HTML), then each (heading, HTML) section."""
    body = "".join(f"<h2>{html.escape(heading)}</h2>\n{content}\n" for heading, content in sections)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{intro}\n{body}</body></html>\n"
    )


def _stem(path: Any) -> str:
    name = str(path).rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0]
