"""Markdown tables as HTML pages, for the Snakemake report.

The report shows HTML and images inline but offers Markdown and CSV files only as downloads,
so each table (and the pseudo-label quality table) is also written as a small self-contained
HTML page. The Markdown here is the subset the pipeline writes: ``#``/``##`` headings, pipe
tables with an alignment row, ``- `` bullet lists, paragraphs, and inline ``code`` and
``**bold**``.
"""

from __future__ import annotations

import html
import re

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; }
th { background: #eee; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _inline(text: str) -> str:
    """Escape ``text`` and render its inline code spans and bold runs."""
    parts = text.split("`")
    out = []
    for k, part in enumerate(parts):
        escaped = html.escape(part, quote=False)
        if k % 2:  # inside backticks (an unmatched last one stays literal)
            out.append(f"<code>{escaped}</code>" if k < len(parts) - 1 else f"`{escaped}")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped))
    return "".join(out)


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner)]


def _table(lines: list[str]) -> str:
    """A pipe table: header line, alignment line (``---:`` right-aligns), body lines."""
    header = _cells(lines[0])
    align = ["num" if c.endswith(":") else "" for c in _cells(lines[1])] if len(lines) > 1 else []
    align += [""] * (len(header) - len(align))

    def row(cells: list[str], tag: str) -> str:
        return (
            "<tr>"
            + "".join(
                f'<{tag} class="{a}">{_inline(c)}</{tag}>' if a else f"<{tag}>{_inline(c)}</{tag}>"
                for c, a in zip(cells, align, strict=False)
            )
            + "</tr>"
        )

    body = [row(_cells(line), "td") for line in lines[2:]]
    head = row(header, "th")
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def markdown_html(text: str, title: str | None = None) -> str:
    """A complete HTML page of the Markdown ``text``; the title defaults to the first heading."""
    blocks: list[str] = []
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if not line.strip():
            k += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            heading = line[level:].strip()
            title = title or heading
            blocks.append(f"<h{level}>{_inline(heading)}</h{level}>")
            k += 1
        elif line.lstrip().startswith("|"):
            start = k
            while k < len(lines) and lines[k].lstrip().startswith("|"):
                k += 1
            blocks.append(_table(lines[start:k]))
        elif line.startswith("- "):
            items = []
            while k < len(lines) and lines[k].startswith("- "):
                items.append(f"<li>{_inline(lines[k][2:])}</li>")
                k += 1
            blocks.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        else:
            start = k
            while k < len(lines) and lines[k].strip() and not _starts_block(lines[k]):
                k += 1
            blocks.append(f"<p>{_inline(' '.join(s.strip() for s in lines[start:k]))}</p>")
    head = f"<title>{html.escape(title or 'uvis')}</title><style>{_STYLE}</style>"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">{head}</head>\n'
        "<body>\n" + "\n".join(blocks) + "\n</body>\n</html>\n"
    )


def _starts_block(line: str) -> bool:
    return line.startswith(("#", "- ")) or line.lstrip().startswith("|")
