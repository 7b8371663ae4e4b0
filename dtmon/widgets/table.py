"""A DataTable updated in place from keyed rows: only changed cells are touched, the cursor stays on its row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.color import Color
from textual.message import Message
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from ..format import MUTED, Cell, Column, Row, RowDiff, diff_rows, unique_rows


class KeyedTable(DataTable):
    """Rows keyed by a stable id; `apply(rows)` adds, removes, updates and re-sorts only what changed.

    Cells are plain `format.Cell`s (text + tone); tones become theme colours here, so the rows
    themselves stay comparable and the diff stays pure.
    """

    #: Semantic tones -> theme variables.
    TONES = {"error": "error", "warning": "warning", "success": "success"}

    #: DataTable's keys in words an operator reads on the help screen; home/end move to the first/last row
    #: (DataTable scrolls sideways with them when the cursor selects rows, which nobody expects).
    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False, tooltip="Move one row up / down"),
        Binding("down", "cursor_down", "Down", show=False, tooltip="Move one row up / down"),
        Binding("pageup", "page_up", "Page up", show=False, tooltip="Move a page up / down"),
        Binding("pagedown", "page_down", "Page down", show=False, tooltip="Move a page up / down"),
        Binding("home", "scroll_top", "First row", show=False, tooltip="Move to the first / last row"),
        Binding("end", "scroll_bottom", "Last row", show=False, tooltip="Move to the first / last row"),
        Binding("ctrl+home", "scroll_top", "First row", show=False, tooltip="The same as home / end"),
        Binding("ctrl+end", "scroll_bottom", "Last row", show=False, tooltip="The same as home / end"),
        Binding("left", "cursor_left", "Left", show=False,
                tooltip="Scroll sideways (when the columns are wider than the screen)"),
        Binding("right", "cursor_right", "Right", show=False,
                tooltip="Scroll sideways (when the columns are wider than the screen)"),
        Binding("ctrl+pageup", "page_left", "Page left", show=False,
                tooltip="Scroll a page sideways (when the columns are wider than the screen)"),
        Binding("ctrl+pagedown", "page_right", "Page right", show=False,
                tooltip="Scroll a page sideways (when the columns are wider than the screen)"),
    ]

    #: Width of the vertical scrollbar (see styles/dtmon.tcss) reserved when sizing the last column.
    SCROLLBAR = 1

    #: True while `apply` updates cells in place and will repaint the touched rows itself.
    _rows_only = False

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._rows: list[Row] = []
        self._by_key: dict[str, Row] = {}
        self._columns: tuple[Column, ...] = ()
        self._layout_width = 0
        #: The object in the first column of each row, to find the row again when sorting.
        self._first_cell: dict[str, Text] = {}
        self._styles: dict[str | None, Style] = {}

    # -- public ----------------------------------------------------------------

    @property
    def shown_rows(self) -> list[Row]:
        """The rows as displayed, in order."""
        return list(self._rows)

    def row_for(self, key: str) -> Row | None:
        return self._by_key.get(key)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor."""
        if not self._rows or self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def set_columns(self, columns: Sequence[Column], rows: Sequence[Row] | None = None) -> None:
        """Use these columns (and rows made for them); rebuilt, keeping the cursor row, when they or the width changed."""
        columns = tuple(columns)
        width = self._available_width()
        if columns == self._columns and width == self._layout_width and self.columns:
            if rows is not None:
                self.apply(rows)
            return
        self._columns = columns
        self._layout_width = width
        self._rebuild(rows)

    def apply(self, rows: Sequence[Row]) -> RowDiff:
        """Bring the table to `rows` with the fewest changes; returns what was done."""
        rows = unique_rows(rows)  # DataTable raises on a repeated key: never let server data end the app
        diff = diff_rows(self._rows, rows)
        if diff.empty:
            self._rows = rows
            self._by_key = {r.key: r for r in rows}
            return diff
        cursor_key = self.cursor_key
        old_index = self.cursor_row
        old_order = [r.key for r in self._rows]
        fallback = self._surviving_neighbour(cursor_key, {r.key for r in rows})
        # With no row added or removed, nothing shifts: repaint only the rows that changed or moved
        # (DataTable would repaint all of itself for every cell, and every repaint crosses the SSH link).
        self._rows_only = not diff.added and not diff.removed
        try:
            for key in diff.removed:
                self.remove_row(key)
                self._first_cell.pop(key, None)
            for key, index, cell in diff.changed:
                rendered = self._render(cell)
                if index == 0:
                    self._first_cell[key] = rendered
                self.update_cell(key, self._columns[index].key, rendered)
            for row in diff.added:
                self._add(row)
            self._rows = rows
            self._by_key = {r.key: r for r in rows}
            if diff.reorder:
                rank = {id(self._first_cell[r.key]): i for i, r in enumerate(rows)}
                self.sort(key=lambda values: rank[id(values[0])])
        finally:
            rows_only, self._rows_only = self._rows_only, False
        if rows_only:
            # A row that moved is repainted whole; otherwise only its changed cells are.
            moved = {i for i, (a, b) in enumerate(zip(old_order, (r.key for r in rows))) if a != b}
            for index in sorted(moved):
                self.refresh_row(index)
            for key, column, _ in diff.changed:
                if (index := self.get_row_index(key)) not in moved:
                    self.refresh_coordinate(Coordinate(index, column))
        self._restore_cursor(cursor_key if cursor_key in self._by_key else fallback, old_index)
        return diff

    def refresh(self, *regions, repaint: bool = True, layout: bool = False, recompose: bool = False):
        """As Widget.refresh, except that a whole-table repaint is skipped while `apply` repaints by row."""
        if self._rows_only and not regions and not layout and not recompose:
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    # -- internals -------------------------------------------------------------

    def _available_width(self) -> int:
        return max(0, self.size.width - self.SCROLLBAR)

    def _column_widths(self) -> list[int]:
        fixed = sum(c.width + 2 * self.cell_padding for c in self._columns if c.width)
        flexible = [c for c in self._columns if not c.width]
        rest = max(10, self._layout_width - fixed - 2 * self.cell_padding * len(flexible))
        share = rest // max(1, len(flexible))
        return [c.width or share for c in self._columns]

    def _rebuild(self, rows: Sequence[Row] | None = None) -> None:
        cursor_key = self.cursor_key
        old_index = self.cursor_row
        scroll_y = self.scroll_y
        self.clear(columns=True)
        self._first_cell.clear()
        for column, width in zip(self._columns, self._column_widths()):
            self.add_column(column.label, width=width, key=column.key)
        rows = unique_rows(r for r in (self._rows if rows is None else rows) if len(r.cells) == len(self._columns))
        self._rows = rows
        self._by_key = {r.key: r for r in rows}
        for row in rows:
            self._add(row)
        self._restore_cursor(cursor_key, old_index)
        self.scroll_to(y=scroll_y, animate=False, immediate=True)

    def _add(self, row: Row) -> None:
        cells = [self._render(c) for c in row.cells]
        self._first_cell[row.key] = cells[0]
        self.add_row(*cells, key=row.key)

    def _surviving_neighbour(self, key: str | None, keep: set[str]) -> str | None:
        """The row the cursor should land on if its own row vanishes: the next survivor, else the previous."""
        if key is None:
            return None
        keys = [r.key for r in self._rows]
        if key not in keys:
            return None
        at = keys.index(key)
        for candidate in keys[at + 1 :] + keys[:at][::-1]:
            if candidate in keep:
                return candidate
        return None

    def _restore_cursor(self, key: str | None, old_index: int) -> None:
        """Put the cursor back on `key`; when rows moved above it, scroll by as much so it stays put on screen."""
        if key is None or key not in self._by_key:
            return
        new_index = self.get_row_index(key)
        if new_index != self.cursor_row:
            self.move_cursor(row=new_index, animate=False, scroll=False)
        shift = new_index - old_index
        if shift and self.scroll_y > 0:
            self.scroll_to(y=max(0, self.scroll_y + shift), animate=False, immediate=True)

    def _tone_style(self, tone: str | None) -> Style:
        style = self._styles.get(tone)
        if style is None:
            if tone == MUTED:
                style = Style(dim=True)
            elif tone in self.TONES:
                value = self.app.theme_variables.get(self.TONES[tone])
                style = Style(color=Color.parse(value).rich_color) if value else Style()
            else:
                style = Style()
            self._styles[tone] = style
        return style

    def _render(self, cell: Cell) -> Text:
        style = self._tone_style(cell.tone)
        if cell.bold:
            style = style + Style(bold=True)
        return Text(cell.text, style=style, no_wrap=True, overflow="ellipsis", end="")

    def on_resize(self) -> None:
        self.relayout()

    def relayout(self) -> None:
        """Fit the columns to a new width."""
        if self._columns and self._available_width() != self._layout_width:
            self.set_columns(self._columns)

    def restyle(self) -> None:
        """Re-render every cell with the current theme's colours."""
        self._styles.clear()
        if self._columns:
            self._layout_width = -1
            self.set_columns(self._columns)


class ServicesTable(KeyedTable):
    """The services view: site ▸ stack ▸ service rows."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Details",
                tooltip="Tasks and logs of a service; on a stack fold or unfold it, on a site all its stacks"),
    ]

    @dataclass
    class CompactChanged(Message):
        """The table crossed the compact width: the rows must be rebuilt with other columns."""

        compact: bool

    def __init__(self, *, compact_below: int, id: str | None = None) -> None:
        super().__init__(id=id)
        self.compact_below = compact_below
        self.compact: bool | None = None

    def relayout(self) -> None:
        compact = self.size.width < self.compact_below
        if compact != self.compact:
            self.compact = compact
            self.post_message(self.CompactChanged(compact))  # the app rebuilds rows and columns together
            return
        super().relayout()
