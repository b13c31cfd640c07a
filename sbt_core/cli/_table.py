"""Tables for people, one helper every command uses: readable at 80 columns, ids never cut.

A command describes its columns (:class:`Column`) and hands rows to :func:`print_table`:

- an ``ident`` column (an id a user copies into the next command) is never wrapped nor cut with "…";
- a ``wide`` column is left out unless ``--wide`` (:data:`WideOption`) is given; the command picks its
  narrow set so that it fits 80 columns, and every other column wraps (folds) to the width left;
- with ``--wide`` every column is shown and the lines are as long as the table needs (``less -S``);
- a list that shows only part of what exists says so on a last line, ``N of M <things>``
  (:func:`count_line`), and takes ``--limit`` (:data:`LimitOption`).

Cells are plain text (a value such as ``[x]`` is never read as rich markup); pass a :class:`rich.text.Text`
for a styled cell. ``--json`` output never goes through here: it stays the stable shape of each command.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

import attrs
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Column", "LimitOption", "WideOption", "count_line", "print_table"]

WideOption = Annotated[bool, typer.Option("--wide", "-w", help="Every column, on lines as long as they need.")]
LimitOption = Annotated[int | None, typer.Option("--limit", "-n", min=1, show_default=False,
                                                 help="Show at most this many rows.")]


#: Width a flex column needs at least before the short columns beside it are folded too.
_FLEX_MIN = 16
#: Between two columns: the (blank) rule of the box and a space of padding on each side.
_GAP = 3


@attrs.frozen
class Column:
    """One column: its header, whether it holds an id (``ident``: never wrapped or cut), whether it is shown
    only with ``--wide``, whether it is long text that takes the width the others leave (``flex``: other
    columns keep their natural width when they can), and its alignment."""

    header: str
    ident: bool = False
    wide: bool = False
    flex: bool = False
    justify: Literal["left", "right"] = "left"


def _cell(value: object) -> Text:
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))


def count_line(shown: int, total: int | None, noun: str, *, more: str | None = None) -> str:
    """``"50 of 1234 events"`` (``total`` None: ``"50 events"``), plus ``more`` (how to see the rest) when
    not everything is shown."""
    text = f"{shown} of {total} {noun}" if total is not None else f"{shown} {noun}"
    partial = total is None or shown < total
    return f"{text} ({more})" if more and partial else text


def print_table(title: str | None, columns: Sequence[Column], rows: Iterable[Sequence[object]], *,
                wide: bool = False, footer: str | None = None, console: Console | None = None) -> None:
    """Print ``rows`` (one value per column of ``columns``) as a table on stdout (or ``console``).

    Without ``wide`` the ``wide`` columns are dropped and the table is laid out in the console's width (80
    when stdout is not a terminal); ids keep their full width and the other columns wrap. ``footer``
    (e.g. :func:`count_line`) is printed under the table.
    """
    console = console or Console()
    shown = [(i, c) for i, c in enumerate(columns) if wide or not c.wide]
    data = [[_cell(row[i]) for i, _ in shown] for row in rows]
    table = Table(title=None if title is None else Text(title), box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, title_justify="left", title_style="bold",
                  expand=not wide and any(c.flex for _, c in shown))
    widths = [max([len(c.header)] + [row[p].cell_len for row in data]) for p, (_, c) in enumerate(shown)]
    # Width left once ids and the gaps between columns are taken: a flex column gets two shares of it,
    # any other column at most one (it folds beyond), so long text is not squeezed to a letter a line.
    left = console.width - _GAP * (len(shown) - 1) - sum(w for w, (_, c) in zip(widths, shown, strict=True) if c.ident)
    others = [c for _, c in shown if not c.ident]
    flexible = sum(1 for c in others if c.flex)
    natural = sum(w for w, (_, c) in zip(widths, shown, strict=True) if not c.ident and not c.flex)
    share: int | None = max(left, 0) // max(1, len(others) + flexible)
    if not flexible or left - natural >= _FLEX_MIN * flexible:
        share = None  # the short columns keep their width (rich narrows the widest if they must fold)
    for position, (_, column) in enumerate(shown):
        if column.ident:
            table.add_column(column.header, justify=column.justify, no_wrap=True, overflow="ignore",
                             min_width=widths[position])
        elif wide:
            table.add_column(column.header, justify=column.justify, no_wrap=True)
        else:
            table.add_column(column.header, justify=column.justify, overflow="fold", ratio=1 if column.flex else None,
                             max_width=None if column.flex or share is None else max(share, len(column.header)))
    for row in data:
        table.add_row(*row)
    if wide:
        # As wide as the table wants: nothing folded, whatever the terminal.
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=max(console.width, natural), force_terminal=console.is_terminal,
                          no_color=console.no_color)
    console.print(table)
    if footer:
        console.print(Text(footer))
