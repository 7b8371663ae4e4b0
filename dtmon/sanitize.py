"""Server data made safe to show and to compute with: text without control sequences, numbers in bounds.

Everything dtmon shows comes from servers it does not control. Collectors pass each string through
`clean` (and each number through `count` or `number`) where the server's answer becomes the model, so
the dashboard, `dtmon status`, plans, the audit log and error messages all get clean text.

- C0 controls (but tab), ESC and DEL are shown in caret notation (`^[`, `^G`, `^J`, `^?`), C1 controls
  (0x80-0x9F) as `<9b>`, bidi overrides and isolates (U+202A-202E, U+2066-2069) and lone surrogates as
  `<U+202E>`: nothing a terminal acts on survives, and what was there stays visible.
- Every text has a length bound (`limit` characters, "…" at the cut).
- Log lines may keep their SGR colours: `log_line` extracts them as data and drops every other escape
  sequence (CSI, OSC, DCS, `ESC c`, C1); a view rebuilds colours from that data alone (`LogLine.ansi`).

Pure: no Textual, no Rich.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: Default bound of one text from a server (characters): an error message, a label value.
MAX_TEXT = 500
#: Bound of a name (service, image, node, bucket, label): Docker names are at most 63 characters.
MAX_NAME = 200
#: Bound of one log line.
MAX_LOG_LINE = 2000
#: The largest count believed (files, tasks, work items): anything above is a server error, not data.
MAX_COUNT = 10**15

ELLIPSIS = "…"


def _visible(code: int) -> str:
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    if code <= 0x9F:
        return f"<{code:02x}>"
    return f"<U+{code:04X}>"


_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _replace(match: re.Match[str]) -> str:
    return _visible(ord(match.group()))


def clean(value: object, limit: int = MAX_TEXT) -> str:
    """`value` as text that is safe on a terminal: controls and bidi overrides shown, at most `limit` characters.

    Not injective (a literal "^[" and an ESC look alike): use it for what people read, never as a key.
    """
    text = value if isinstance(value, str) else _plain(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(_replace, text)
        if len(text) > limit:
            text, cut = text[:limit], True
    if cut:
        text = text[: max(0, limit - 1)] + ELLIPSIS
    return text


def clean_lines(value: object, limit: int = MAX_TEXT) -> str:
    """`clean` for text of several lines (a command's output): newlines kept, everything else as `clean` does."""
    text = value if isinstance(value, str) else _plain(value)
    cut = len(text) > limit
    lines = [clean(line, limit) for line in text[:limit].split("\n")]
    joined = "\n".join(lines)
    if cut or len(joined) > limit:
        joined = joined[: max(0, limit - 1)] + ELLIPSIS
    return joined


def clean_optional(value: object, limit: int = MAX_TEXT) -> str | None:
    """`clean(value)`, or None for None and the empty string."""
    if value is None or value == "":
        return None
    return clean(value, limit)


def name(value: object) -> str:
    """A name from a server (service, image, node, bucket, label value), cleaned and bounded."""
    return clean(value, MAX_NAME)


def _plain(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return describe_number(value)
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a hostile object's __str__ must not take the caller down
        return f"<{type(value).__name__}>"


# ---------------------------------------------------------------------------
# Numbers.
# ---------------------------------------------------------------------------


def describe_number(value: object) -> str:
    """A short text for a number from a server, however large (str() of a 5,000-digit int raises)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        if abs(value) < 10**18:
            return str(value)
        digits = int(abs(value).bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}a number of ~{digits} digits"
    if isinstance(value, float):
        return repr(value)
    text = clean(value, 40)
    return repr(text) if isinstance(value, str) else text


def count(value: object, what: str = "count", limit: int = MAX_COUNT) -> int:
    """A whole number of things in [0, `limit`]; ValueError naming `what` for anything else.

    A negative count, a fraction, a bool, a string or a 10**4000 is a server error, not a row.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and 0 <= value <= limit:
            return int(value)
        raise ValueError(f"{what}: expected a count, got {describe_number(value)}")
    if value < 0:
        raise ValueError(f"{what}: a count cannot be negative, got {describe_number(value)}")
    if value > limit:
        raise ValueError(f"{what}: {describe_number(value)} is beyond any believable count (>{limit:.0e})")
    return value


def number(value: object, what: str = "value", low: float = -float(MAX_COUNT), high: float = float(MAX_COUNT)) -> float:
    """A finite number in [low, high] from a JSON number or a numeric string ("1.5", as Prometheus sends
    them); ValueError naming `what` for NaN, ±Inf, out of range or not a number."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {describe_number(value)}")
    try:
        result = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ValueError(f"{what}: {describe_number(value)} is out of range") from None
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {describe_number(value)}") from None
    if not math.isfinite(result):
        raise ValueError(f"{what}: expected a finite number, got {describe_number(value)}")
    if not low <= result <= high:
        raise ValueError(f"{what}: {result:g} is out of range [{low:g}, {high:g}]")
    return result


# ---------------------------------------------------------------------------
# Log lines: SGR colours kept as data, everything else dropped.
# ---------------------------------------------------------------------------

#: Escape sequences as terminals parse them, 7-bit and C1 forms: CSI, then the string commands (OSC, DCS,
#: SOS, PM, APC) up to BEL or ST (or the end of the line when unterminated), then any other ESC sequence.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_SGR_PARAMS = re.compile(r"[0-9;:]{0,64}")


@dataclass(frozen=True)
class LogLine:
    """One log line: clean text, and the SGR colour changes in it as (offset in `text`, parameters)."""

    text: str
    sgr: tuple[tuple[int, str], ...] = ()

    def ansi(self) -> str:
        """The text with its colours as SGR sequences rebuilt from the parsed data: no other escape can be in it."""
        if not self.sgr:
            return self.text
        parts, at = [], 0
        for offset, params in self.sgr:
            parts.append(self.text[at:offset])
            parts.append(f"\x1b[{params}m")
            at = offset
        parts.append(self.text[at:])
        return "".join(parts)

    def __str__(self) -> str:
        return self.text


def log_line(raw: str, limit: int = MAX_LOG_LINE) -> LogLine:
    """A raw log line as clean text plus its SGR colours; every other escape sequence and C1 control is dropped
    (a stray control character left over is shown, as `clean` shows it)."""
    if len(raw) > 4 * limit:  # bounds the work: a line this long is cut anyway
        raw = raw[: 4 * limit]
    text: list[str] = []
    sgr: list[tuple[int, str]] = []
    length = 0
    at = 0

    def add(piece: str) -> None:
        nonlocal length
        if piece and length < limit:
            shown = clean(piece, limit - length + 1)
            text.append(shown)
            length += len(shown)

    for match in _SEQUENCE.finditer(raw):
        add(raw[at : match.start()])
        at = match.end()
        if match.group("final") == "m" and not match.group("inter") and _SGR_PARAMS.fullmatch(match.group("params")):
            if length < limit:
                sgr.append((length, match.group("params")))
    add(raw[at:])
    joined = "".join(text)
    if len(joined) > limit:
        joined = joined[: limit - 1] + ELLIPSIS
    return LogLine(joined, tuple((min(offset, len(joined)), params) for offset, params in sgr))
