"""Small tables for notebooks: rendered as HTML in JupyterLab and as aligned text anywhere else.

A notebook shows facts as a table of words (named calls and results, symbolized addresses,
decoded PSTATE) rather than printing dataclass reprs with decimal addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


class Table:
    """Rows of cells under ``headers``; a notebook cell that ends with one shows it as a table."""

    def __init__(self, headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
        self.headers = [str(h) for h in headers]
        self.rows = [[str(cell) for cell in row] for row in rows]
        self.title = title

    def column(self, header: str) -> list[str]:
        """The cells of one column, top to bottom (what a check cell reads)."""
        i = self.headers.index(header)
        return [row[i] for row in self.rows]

    def _repr_html_(self) -> str:
        # Monospace cells and a 14 px font: addresses and PSTATE line up and read at a distance.
        head = "".join(f"<th style='text-align:left'>{escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left;font-family:monospace'>{escape(c)}</td>"
                                        for c in row) + "</tr>" for row in self.rows)
        caption = f"<caption style='text-align:left;font-weight:bold'>{escape(self.title)}</caption>" \
            if self.title else ""
        return f"<table style='font-size:14px'>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        widths = [max(len(x) for x in column) for column in zip(self.headers, *self.rows, strict=True)]
        lines = [self.title] if self.title else []
        for cells in (self.headers, *self.rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        lines.insert(2 if self.title else 1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    __repr__ = __str__
