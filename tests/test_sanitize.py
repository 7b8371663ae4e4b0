"""The sanitiser and the number validation (pure), with property tests: whatever a server sends, what comes out
holds no byte a terminal acts on, stays within its bound, and numbers are finite and in range or refused."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmon import sanitize
from dtmon.redact import config_secrets, redact_url, scrub, url_secrets, webhook_url
from dtmon.sanitize import LogLine, clean, clean_lines, count, log_line, number

#: What a terminal could act on: C0 but tab (newline included: one field is one line), DEL, C1, bidi
#: overrides and isolates, lone surrogates.
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

#: Text as servers could send it: any code point, with the dangerous ones over-represented.
hostile_text = st.lists(
    st.one_of(
        st.characters(codec=None, categories=None),
        st.sampled_from(["\x1b", "\x07", "\x9b", "\x9d", "\x9c", "\x1b[", "\x1b]", "\x1bc", "\x1b\\", "\u202e",
                         "\u2066", "\ud800", "\x7f", "\n", "\r", "\t", "m", ";", "0", "31"]),
    ),
    max_size=150,
).map("".join)


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("s1_\x1b]0;pwned\x07", "s1_^[]0;pwned^G"),
        ("\x1b[2J", "^[[2J"),
        ("\x1bc", "^[c"),
        ("a\x9b31mb", "a<9b>31mb"),
        ("tab\tkept", "tab\tkept"),
        ("two\nlines", "two^Jlines"),
        ("del\x7f", "del^?"),
        ("evil\u202eexe.txt", "evil<U+202E>exe.txt"),
        ("iso\u2066late\u2069", "iso<U+2066>late<U+2069>"),
        ("lone \ud800", "lone <U+D800>"),
        ("ünïcødé ✓ 日本", "ünïcødé ✓ 日本"),
    ],
)
def test_clean_shows_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_clean_bounds_the_length_and_marks_the_cut() -> None:
    assert clean("x" * 1000, 10) == "x" * 9 + "…"
    assert clean("\x1b" * 100, 10) == "^[" * 4 + "^…"
    assert clean("short", 10) == "short"
    assert clean(None) == "None" and sanitize.clean_optional(None) is None and sanitize.clean_optional("") is None


def test_clean_of_a_huge_integer_does_not_raise() -> None:
    # str() of a 5,000-digit int raises ValueError (Python's int-to-str limit).
    assert "digits" in clean(10**5000)


@settings(max_examples=400, deadline=None)
@given(hostile_text, st.integers(min_value=1, max_value=400))
def test_clean_never_lets_a_control_through_and_keeps_its_bound(raw: str, limit: int) -> None:
    out = clean(raw, limit)
    assert not UNSAFE.search(out)
    assert len(out) <= limit
    out.encode("utf-8")  # printable: a lone surrogate would raise here (and in print())
    if not UNSAFE.search(raw) and len(raw) <= limit:
        assert out == raw  # clean text is left alone


@settings(max_examples=200, deadline=None)
@given(hostile_text)
def test_clean_lines_keeps_newlines_only(raw: str) -> None:
    out = clean_lines(raw, 1000)
    assert not UNSAFE.search(out.replace("\n", ""))


# ---------------------------------------------------------------------------
# Log lines: SGR kept as data, nothing else.
# ---------------------------------------------------------------------------


def test_log_line_keeps_sgr_colours_as_data_and_drops_every_other_sequence() -> None:
    raw = "\x1b[31mred\x1b[0m \x1b]0;title\x07\x1b]52;c;Y2xpcA==\x1b\\\x1b]8;;file:///etc/passwd\x07link\x1b]8;;\x07" \
          "\x1b[2J\x1bc\x9b2J\x9d0;t\x9c\x1b[?1049h\x1b7end\x1b[1;32mok"
    line = log_line(raw)
    assert line.text == "red linkend" + "ok"
    assert line.sgr == ((0, "31"), (3, "0"), (11, "1;32"))
    assert line.ansi() == "\x1b[31mred\x1b[0m linkend\x1b[1;32mok"


def test_log_line_shows_stray_controls_and_bounds_the_line() -> None:
    assert log_line("bell\x07 and \x85").text == "bell^G and <85>"
    assert log_line("unterminated osc \x1b]0;never ends").text == "unterminated osc "
    long = log_line("\x1b[31m" + "x" * 10_000, limit=100)
    assert len(long.text) == 100 and long.text.endswith("…") and long.sgr == ((0, "31"),)
    assert LogLine("plain").ansi() == "plain"


@settings(max_examples=400, deadline=None)
@given(hostile_text)
def test_log_line_rebuilds_nothing_but_sgr(raw: str) -> None:
    line = log_line(raw, limit=200)
    assert not UNSAFE.search(line.text)
    assert len(line.text) <= 200
    rebuilt = line.ansi()
    # Take out the SGR sequences: what is left must be the clean text, with no ESC anywhere.
    assert re.sub(r"\x1b\[[0-9;:]*m", "", rebuilt) == line.text
    assert all(0 <= offset <= len(line.text) for offset, _ in line.sgr)
    assert [o for o, _ in line.sgr] == sorted(o for o, _ in line.sgr)


# ---------------------------------------------------------------------------
# Numbers.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-5, 10**4000, 10**15 + 1, 1.5, "12", None, True, float("inf"), float("nan"), [1]])
def test_count_refuses_what_no_count_is(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        count(bad, "queued")
    assert info.value.args[0].startswith("queued:")
    assert len(str(info.value)) < 200  # 10**4000 is described, not printed


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.booleans(),
                 st.none()))
def test_count_gives_a_sane_int_or_a_value_error(value: object) -> None:
    try:
        result = count(value, "n")
    except ValueError:
        return
    assert type(result) is int and 0 <= result <= sanitize.MAX_COUNT


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                 st.from_regex(r"[+-]?(\d{1,400}(\.\d*)?(e[+-]?\d{1,4})?|Inf|NaN)", fullmatch=True)))
def test_number_gives_a_finite_bounded_float_or_a_value_error(value: object) -> None:
    try:
        result = number(value, "v", low=-1e6, high=1e6)
    except ValueError as exc:
        assert len(str(exc)) < 200
        return
    assert math.isfinite(result) and -1e6 <= result <= 1e6


# ---------------------------------------------------------------------------
# Secrets.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://user:pass@host:8004", "http://user:***@host:8004"),
        ("https://user:p%40ss@host/path?q=1", "https://user:***@host/path?q=1"),
        ("http://token@host", "http://token@host"),
        ("http://host:9090", "http://host:9090"),
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("http://u:pw@host:99999/x", "http://***@host:99999/x"),  # unparsable port: masked all the same
        ("", ""),
    ],
)
def test_redact_url_masks_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_webhook_url_is_scheme_and_host_only() -> None:
    assert webhook_url("https://hooks.slack.com/services/T000/B000/SECRET") == "https://hooks.slack.com/…"
    assert webhook_url("http://u:p@127.0.0.1:8080/hook?token=abc") == "http://127.0.0.1:8080/…"
    assert webhook_url("http://[::1]:9/x") == "http://[::1]:9/…"
    assert webhook_url("") == ""


def test_scrub_removes_every_known_secret_from_any_text() -> None:
    secrets = url_secrets("http://alice:s3cr%2Ft@host", whole=False) + url_secrets(
        "https://hooks.example/services/TOKEN123", whole=True)
    text = "failed http://alice:s3cr%2Ft@host and s3cr/t, POST https://hooks.example/services/TOKEN123 (/services/TOKEN123)"
    out = scrub(text, secrets)
    assert "s3cr" not in out and "TOKEN123" not in out
    assert out.count("***") >= 3


def test_config_secrets_collects_every_password_and_the_webhook(tmp_path) -> None:
    from types import SimpleNamespace as NS

    config = NS(
        sites=[NS(docker="tcp://a:dockerpw@h:2376"), NS(docker="unix:///s.sock")],
        buckets=NS(url="http://b:bucketspw@h:8004"),
        prometheus=NS(url="http://h:9090"),
        deploy=NS(announce="https://hooks.example/T/B/whsecret"),
    )
    found = config_secrets(config)
    for secret in ("dockerpw", "bucketspw", "/T/B/whsecret"):
        assert secret in found


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="ascii", min_codepoint=0x21, max_codepoint=0x7e, exclude_characters=":@/?#[]%"),
               min_size=3, max_size=20))
def test_a_password_never_survives_redaction(password: str) -> None:
    # The password may also be a piece of the rest ("htt" of "http", "ser" of "user"), so "not in the whole
    # string" is the wrong property. What must hold: the password field of the shown URL holds none of it;
    # redact_url shows everything outside the userinfo exactly as it was (so the password turns up nowhere
    # else); scrub masks every occurrence, so none is left outside its masks.
    url = f"http://user:{password}@example.org:8004/x"
    userinfo = re.compile(r"//([^@/]*)@")

    def password_field(shown: str) -> str:
        found = userinfo.search(shown)
        assert found, shown
        return found.group(1).partition(":")[2]

    shown = redact_url(url)
    assert password_field(shown) == "***" and (password == "***" or password not in password_field(shown))
    assert userinfo.sub("//@", shown) == userinfo.sub("//@", url)
    scrubbed = scrub(f"error at {url}", url_secrets(url))
    assert password_field(scrubbed) == "***"
    assert password not in scrubbed.replace("***", "\0")


def test_sanitize_and_redact_import_neither_textual_nor_rich() -> None:
    import subprocess
    import sys

    code = ("import sys, dtmon.sanitize, dtmon.redact, dtmon.collectors.swarm, dtmon.collectors.buckets, "
            "dtmon.collectors.prometheus; print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------
# The collectors' parsers on arbitrary answers: what they return is clean, keys are unique, nothing but a
# ValueError (the source's error) comes out of them.
# ---------------------------------------------------------------------------

leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
                 st.floats(allow_nan=True, allow_infinity=True), hostile_text, st.lists(st.integers(), max_size=2))


def maybe(strategy):
    """Mostly the expected shape (so that whole services get through), sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, leaf)


small = st.one_of(st.integers(0, 3), st.integers(0, 3), leaf)


engine_service = st.fixed_dictionaries({
    "ID": st.one_of(st.sampled_from(["a", "b", "a"]), leaf),
    "Spec": maybe(st.fixed_dictionaries({
        "Name": st.one_of(hostile_text.map(lambda t: "dt_" + t), st.sampled_from(["dt_svc", "dt_svc", "a_b_c"]), leaf),
        "Labels": maybe(st.fixed_dictionaries({"com.docker.stack.namespace": st.sampled_from(["dt", "a", "a_b"])})),
        "TaskTemplate": maybe(st.fixed_dictionaries({"ContainerSpec": maybe(st.fixed_dictionaries({"Image": leaf}))})),
        "Mode": maybe(st.fixed_dictionaries({"Replicated": leaf})),
    })),
    "ServiceStatus": maybe(st.fixed_dictionaries({"RunningTasks": small, "DesiredTasks": small})),
    "UpdateStatus": maybe(st.fixed_dictionaries({"State": leaf, "Message": leaf})),
    "UpdatedAt": leaf,
})
engine_task = st.fixed_dictionaries({
    "ID": st.one_of(st.sampled_from(["t", "t"]), leaf),
    "ServiceID": st.one_of(st.sampled_from(["a", "b"]), leaf),
    "NodeID": leaf,
    "Slot": small,
    "DesiredState": leaf,
    "Status": maybe(st.fixed_dictionaries({
        "State": st.one_of(st.sampled_from(["failed", "running"]), leaf), "Err": leaf, "Message": leaf,
        "Timestamp": st.one_of(st.just("2026-12-01T12:00:00.123456789Z"), leaf),
        "ContainerStatus": maybe(st.fixed_dictionaries({"ContainerID": leaf, "ExitCode": small})),
    })),
})


def strings_of(value) -> list[str]:
    import dataclasses

    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in strings_of(getattr(value, f.name))]
    if isinstance(value, (tuple, list)):
        return [s for item in value for s in strings_of(item)]
    return []


@settings(max_examples=300, deadline=None)
@given(st.lists(engine_service, max_size=4), st.lists(engine_task, max_size=4))
def test_swarm_answers_of_any_shape_become_clean_rows_or_a_value_error(services, tasks) -> None:
    from datetime import datetime, timezone
    from pathlib import Path

    from dtmon.collectors.swarm import SwarmError, build_stacks, task_info
    from dtmon.config import SiteConfig
    from dtmon.format import site_rows, task_rows
    from dtmon.model import SiteStatus

    site = SiteConfig("s", "unix:///x", {"dt": Path("/x"), "a": Path("/a"), "a_b": Path("/ab")}, None,
                      {"dt": {"svc": 1}, "a": {"b_c": 1}, "a_b": {"c": 1}})
    now = datetime(2026, 12, 1, 12, 5, tzinfo=timezone.utc)
    try:
        stacks = build_stacks(site, services, tasks, now)
    except (SwarmError, ValueError):
        return
    status = SiteStatus("s", True, polled_at=now, stacks=stacks)
    assert not [s for s in strings_of(stacks) if UNSAFE.search(s)]
    keys = [service.key for service in status.services]
    assert len(keys) == len(set(keys))
    rows = site_rows(status, now)
    assert len({r.key for r in rows}) == len(rows)
    parsed = []
    for raw in tasks:
        try:
            parsed.append(task_info(raw, {}))
        except ValueError:
            continue
    assert not [s for s in strings_of(parsed) if UNSAFE.search(s)]
    task_keys = [r.key for r in task_rows(parsed, now)]
    assert len(task_keys) == len(set(task_keys))


@settings(max_examples=300, deadline=None)
@given(hostile_text, st.dictionaries(st.sampled_from(["queued", "running", "success", "failure", "total", "error"]),
                                     leaf, max_size=6))
def test_bucket_counts_of_any_shape_become_a_clean_bucket_or_a_value_error(name, data) -> None:
    from dtmon.collectors.buckets import parse_counts

    try:
        bucket = parse_counts(name, data)
    except ValueError as exc:
        assert not UNSAFE.search(str(exc)) and len(str(exc)) < 400
        return
    assert not UNSAFE.search(bucket.name)
    for count_ in (bucket.queued, bucket.running, bucket.success, bucket.failure, bucket.total):
        assert type(count_) is int and 0 <= count_ <= 5 * sanitize.MAX_COUNT


sample_value = st.one_of(st.sampled_from(["1", "0", "5.5", "NaN", "+Inf", "-Inf", "1e308", "-3", "1e400"]), leaf)
series = st.fixed_dictionaries({
    "metric": maybe(st.dictionaries(st.one_of(st.just("site"), st.just("job"), hostile_text),
                                    st.one_of(st.sampled_from(["chime", "kko"]), hostile_text), max_size=3)),
    "value": maybe(st.tuples(st.just(1764590400), sample_value)),
    "values": maybe(st.lists(st.tuples(st.sampled_from([1764590400, 1764590460]), sample_value), max_size=3)),
})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["replication_pending", "replication_done", "replication_failed",
                                        "replication_pending[range]", "targets_up", "push_age", "pg_up"]),
                       maybe(st.lists(series, max_size=3)), max_size=7))
def test_prometheus_answers_of_any_shape_become_a_clean_report(results) -> None:
    from dtmon.collectors.prometheus import PrometheusCollector
    from dtmon.config import PrometheusConfig
    from dtmon.format import unique_rows
    from dtmon.widgets.progress import feed_rows, progress_rows

    collector = PrometheusCollector(PrometheusConfig(url="http://u:pw@127.0.0.1:9"), timeout=1.0)
    report = collector._assemble(results, {}, 1764590400.0)  # a shape it cannot read is that query's error
    assert not [s for s in strings_of(report) if UNSAFE.search(s)]
    numbers = [v for p in report.progress for v in (p.pending, p.done, p.failed, p.rate_per_hour, *p.pending_history)
               if v is not None] + [f.value for f in report.feeds if f.value is not None]
    assert all(math.isfinite(v) for v in numbers)
    for rows in (progress_rows(report), progress_rows(report, compact=True), feed_rows(report)):
        assert len({r.key for r in unique_rows(rows)}) == len(rows)
