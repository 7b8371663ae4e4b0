"""The help screen, generated from the bindings themselves so it can't drift from what the keys do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
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
FALLBACK_DESCRIPTIONS = {"help_quit": "Say how to quit (ctrl+q or q)"}


def help_rows(
    sections: Sequence[tuple[str, Iterable[Binding]]], key_display: Callable[[Binding], str]
) -> list[tuple[str, str, str]]:
    """(section, keys, description) for every binding, keys for the same action joined ("↑ / k")."""
    rows: list[tuple[str, str, str]] = []
    for title, bindings in sections:
        merged: dict[tuple[str, str], list[str]] = {}
        for binding in bindings:
            description = (
                binding.tooltip
                or binding.description
                or FALLBACK_DESCRIPTIONS.get(binding.action, binding.action.replace("_", " "))
            )
            merged.setdefault((binding.action, description), []).append(key_display(binding))
        for (_, description), keys in merged.items():
            rows.append((title, " / ".join(dict.fromkeys(keys)), description))
    return rows


#: What the marks on the screen mean.
LEGEND = (
    ("✓", "site chip: every service running (or stopped on purpose); then poll latency"),
    ("▲3", "site chip: three services need attention"),
    ("✗ 2m", "site chip: the manager does not answer; its data, shown dimmed, is 2 minutes old"),
    ("…", "site chip: first poll still running"),
    ("12s", "on a chip: the data is older than a poll period plus the timeout"),
    ("? name", "a service the stack's compose file does not name"),
    ("-/1", "a compose service that is not deployed (missing)"),
)


class HelpScreen(ModalScreen):
    """Every key, by where it works."""

    BINDINGS = [
        Binding("escape,question_mark,q", "app.pop_screen", "Close help"),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__(id="help")
        self.rows = rows

    def compose(self) -> ComposeResult:
        width = max((len(keys) for _, keys, _ in self.rows), default=4) + 2
        lines: list[Content] = [Content.styled("dtmon — keys", "bold"), Content("")]
        section = None
        for title, keys, description in self.rows:
            if title != section:
                if section is not None:
                    lines.append(Content(""))
                lines.append(Content.styled(title, "bold"))
                section = title
            lines.append(Content.assemble(("  " + keys.ljust(width), "$accent"), description))
        lines.extend([Content(""), Content.styled("Marks", "bold")])
        for mark, meaning in LEGEND:
            lines.append(Content.assemble(("  " + mark.ljust(width), "$accent"), meaning))
        lines.extend([Content(""), Content.styled("escape, ? or q closes this help", "italic")])
        with VerticalScroll(id="help-body"):
            yield Static(Content("\n").join(lines), id="help-text", markup=False)
