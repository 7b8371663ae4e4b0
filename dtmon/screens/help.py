"""The help screen, generated from the bindings themselves so it can't drift from what the keys do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static


def class_bindings(cls: type) -> list[Binding]:
    """Every binding a class has, its own overriding inherited ones on the same key, in declaration order."""
    by_key: dict[str, Binding] = {}
    for klass in reversed(cls.__mro__):
        for item in klass.__dict__.get("BINDINGS", []):
            binding = item if isinstance(item, Binding) else Binding(*item)
            for single in binding.make_bindings([binding]) if hasattr(binding, "make_bindings") else [binding]:
                by_key[single.key] = single
    return list(by_key.values())


#: Words for bindings Textual itself declares without a description.
FALLBACK_DESCRIPTIONS = {"help_quit": "Say how to quit"}

#: How a key is written on the help screen and in the README's keys table (modifiers stay words: ctrl+z).
KEY_NAMES = {
    "up": "↑", "down": "↓", "left": "←", "right": "→", "pageup": "pgup", "pagedown": "pgdn",
    "escape": "esc", "question_mark": "?", "slash": "/",
}


def key_name(binding: Binding) -> str:
    """The key of a binding as the help and the README write it: "↑", "pgdn", "ctrl+home", "R"."""
    if binding.key_display:
        return binding.key_display
    *modifiers, key = binding.key.split("+")
    return "+".join([*modifiers, KEY_NAMES.get(key, key)])


def help_rows(
    sections: Sequence[tuple[str, Iterable[Binding]]], key_display: Callable[[Binding], str] = key_name
) -> list[tuple[str, str, str]]:
    """(section, keys, description) for every binding; keys with the same description share a row ("↑ / ↓")."""
    rows: list[tuple[str, str, str]] = []
    for title, bindings in sections:
        merged: dict[str, list[str]] = {}
        for binding in Binding.make_bindings(bindings):  # "escape,q" is two keys
            description = (
                binding.tooltip
                or binding.description
                or FALLBACK_DESCRIPTIONS.get(binding.action, binding.action.replace("_", " "))
            )
            merged.setdefault(description, []).append(key_display(binding))
        for description, keys in merged.items():
            rows.append((title, " / ".join(dict.fromkeys(keys)), description))
    return rows


#: What the marks on the screen mean.
LEGEND = (
    ("✓", "site chip: every service running (or stopped on purpose); then poll latency"),
    ("▲3", "site chip: three services need attention"),
    ("✗ 2m", "site chip: the manager does not answer; its data, shown dimmed, is 2 minutes old"),
    ("name•", "site chip: the site's event stream is open; a change shows within a second"),
    ("…", "site chip: first poll still running"),
    ("12s", "on a chip: the data is older than a poll period plus the timeout"),
    ("▾ / ▸", "services: a stack shown unfolded / folded (enter on its row toggles it)"),
    ("? name", "services: a service the stack's compose file does not name"),
    ("-/1", "services: a compose service that is not deployed (missing)"),
    ("≥4", "services, failed: at least 4 failed; the swarm's task history holds no more (crashloop)"),
    ("!", "buckets: work is queued and a consumer is not running, or none is known"),
    ("▲", "buckets: the queue rose over the last three polls without falling"),
    ("BAD", "progress feeds: a scrape target down, a push older than max_push_age, or pg_up not 1"),
    ("ERR", "progress feeds: a query Prometheus refused (its error beside it)"),
    ("!2", "on a view's tab: two of its rows need attention"),
    ("dimmed", "data from the last good poll of a source that no longer answers"),
)


#: The widest the keys column gets before its text wraps.
KEYS_WIDTH = 16


class HelpScreen(ModalScreen):
    """Every key, by where it works, then what the marks mean; long lines wrap under their own column."""

    BINDINGS = [
        Binding("escape,question_mark,q", "app.pop_screen", "Close help", tooltip="Close this help"),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__(id="help")
        self.rows = rows + help_rows([("This help", HelpScreen.BINDINGS)])

    @property
    def lines(self) -> list[tuple[str, str, str]]:
        """Everything shown: (section, keys or mark, description), keys first, then the marks."""
        return self.rows + [("Marks", mark, meaning) for mark, meaning in LEGEND]

    def compose(self) -> ComposeResult:
        # 2 of indent, 2 of gap; longer keys wrap in their own column rather than narrow every description.
        width = min(max(len(keys) for _, keys, _ in self.lines), KEYS_WIDTH) + 4
        section = None
        with VerticalScroll(id="help-body"):
            yield Static(Content("dtmon — keys"), classes="help-heading", markup=False)
            for title, keys, description in self.lines:
                if title != section:
                    yield Static(Content(title), classes="help-section", markup=False)
                    section = title
                key_cell = Static(Content(keys), classes="help-keys", markup=False)
                key_cell.styles.width = width
                yield Horizontal(key_cell, Static(Content(description), classes="help-text", markup=False),
                                 classes="help-row")
