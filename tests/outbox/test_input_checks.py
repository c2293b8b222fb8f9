"""Input hardening of ``POST /email/messages`` (issue 20 points 4, 7, 8, 11): counts bounded before composing,
no header injection (CR, LF, NUL), 422 instead of 500 for fields the email package cannot read, no line over
998 octets, and heavy requests composed off the event loop."""

from __future__ import annotations

import asyncio
import json
import random
import string
import threading
from typing import Any

import pytest

from mailgate.message.checks import DEFAULT_MAX_RECIPIENTS, MAX_ATTACHMENTS, MAX_HEADERS, MAX_LINE
from mailgate.web import messages_api

from .conftest import API, Env, EnvFactory

MESSAGES = f"{API}/email/messages"
RAW = {"Content-Type": "message/rfc822"}
TO = ["bob@example.com"]
QQ = "QQ=="


def attachment(**fields: str) -> dict[str, str]:
    return {"filename": "a.txt", "content_base64": QQ, **fields}


JSON_REFUSALS: list[tuple[dict[str, Any], str]] = [
    # Header injection and NUL (point 7, 11).
    ({"attachments": [attachment(content_type="text/html\n")]}, "attachments[0].content_type"),
    ({"attachments": [attachment(content_type="text/html\r")]}, "attachments[0].content_type"),
    ({"attachments": [attachment(filename="a\x00.txt")]}, "attachments[0].filename"),
    ({"subject": "a\x00b"}, "subject"),
    ({"subject": "hi\rBcc: evil@attacker.test"}, "subject"),
    ({"text": "a\x00b"}, "text"),
    ({"html": "<p>a\x00b</p>"}, "html"),
    ({"from": "Al\x00 <a@example.com>"}, "from"),
    ({"reply_to": "r@example.com\rBcc: evil@attacker.test"}, "reply_to"),
    ({"cc": ["c@example.com\x00"]}, "cc[0]"),
    ({"headers": {"X-Tag": "a\x00b"}}, "headers.X-Tag"),
    ({"headers": {"X-Tag\r": "v"}}, "headers.X-Tag\r"),
    # What the email package raised on (point 8).
    ({"headers": {"Message-ID": "<a@example.com>", "message-id": "<b@example.com>"}}, "headers.message-id"),
    ({"headers": {"Orig-Date": "Mon, 1 Jan 2024 00:00:00 +0000", "orig-date": "Mon, 1 Jan 2024 00:00:00 +0000"}},
     "headers.orig-date"),
    *[
        ({"headers": {name: value}}, f"headers.{name}")
        for name in ("Resent-To", "Resent-Cc", "Resent-Bcc", "Resent-From", "Resent-Sender")
        for value in ("a@", "<", '"', '"a"@')
    ],
    ({"headers": {"X" * 999: "v"}}, "headers." + "X" * 999),
    # Counts (point 4).
    ({"attachments": [attachment()] * (MAX_ATTACHMENTS + 1)}, "attachments"),
    ({"headers": {f"X-H{i}": "v" for i in range(MAX_HEADERS + 1)}}, "headers"),
    ({"to": [f"r{i}@example.com" for i in range(DEFAULT_MAX_RECIPIENTS + 1)]}, "recipients"),
]  # fmt: skip


async def test_json_refusals_name_the_field(env: Env) -> None:
    for fields, field in JSON_REFUSALS:  # one database for all (each takes a second to make)
        body = {"from": "alice@example.com", "to": TO, "text": "x", **fields}
        r = await env.api.post(MESSAGES, json=body)
        assert r.status_code == 422, (fields, r.text)
        assert field in r.json()["fields"], (fields, r.json())
    assert await env.stored_count() == 0


async def test_count_limits_are_named_in_the_answer(env: Env) -> None:
    r = await env.api.post(MESSAGES, json={"to": TO, "attachments": [attachment()] * 20_000})
    assert r.status_code == 422 and str(MAX_ATTACHMENTS) in r.json()["fields"]["attachments"], r.text
    to = [f"Recipient number {i} <r{i}@example.com>" for i in range(10_000)]
    r = await env.api.post(MESSAGES, json={"to": to})
    assert r.status_code == 422 and f"at most {DEFAULT_MAX_RECIPIENTS}" in r.json()["fields"]["recipients"], r.text


HEAD = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n"
RAW_REFUSALS: list[tuple[bytes, str]] = [
    (HEAD.replace(b"Subject: hi\r\n", b"Subject: hi\rBcc: evil@attacker.test\r\n") + b"\r\nbody\r\n", "headers"),
    (b"From: alice@example.com\r\nTo: bob@example.com\nBcc: evil@attacker.test\r\n\r\nbody\r\n", "headers"),
    (HEAD.replace(b"Subject: hi\r\n", b"Subject: hi\r") + b"\r\nbody\r\n", "headers"),
    (HEAD + b"X-Note: a\r\n\rb\r\n\r\nbody\r\n", "headers"),
    (HEAD + b"Message-ID: <<<>>>\r\n\r\nbody\r\n", "headers.Message-ID"),
    (HEAD + b"X" * 999 + b": v\r\n\r\nbody\r\n", "headers"),
    (HEAD + b"X" * 100 + b": v\r\n\r\nbody\r\n", "headers." + "X" * 100),
    (HEAD + b"Resent-To: a@\r\n\r\nbody\r\n", "headers.Resent-To"),
    (HEAD + b"From: mallory@example.com\r\n\r\nbody\r\n", "headers.From"),
    (HEAD + b"Subject: a\x00b\r\n\r\nbody\r\n", "headers"),
    (HEAD + b"\r\nbo\x00dy\r\n", "body"),
    (HEAD + b"\r\n" + b"x" * 2000 + b"\r\n", "body"),
    (HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(600)) + b"\r\nbody\r\n", "headers"),
]  # fmt: skip


async def test_raw_refusals_name_the_field(env: Env) -> None:
    for raw, field in RAW_REFUSALS:
        r = await env.api.post(MESSAGES, content=raw, headers=RAW)
        assert r.status_code == 422, (raw, r.text)
        assert field in r.json()["fields"], (raw, r.json())
    assert await env.stored_count() == 0


async def test_raw_with_lf_line_ends_and_lines_of_998_is_accepted(env: Env) -> None:
    raw = (HEAD + b"\r\n" + b"y" * MAX_LINE + b"\r\n").replace(b"\r\n", b"\n")
    r = await env.api.post(MESSAGES, content=raw, headers=RAW)
    assert r.status_code == 202, r.text
    stored = await env.stored_raw(r.json()["id"])
    assert stored.endswith(b"\r\n\r\n" + b"y" * MAX_LINE + b"\r\n")


async def test_huge_offset_is_a_422(env: Env) -> None:
    r = await env.api.get(MESSAGES, params={"offset": "99999999999999999999999"})
    assert r.status_code == 422 and "offset" in r.json()["fields"], r.text


def longest_line(raw: bytes) -> int:
    return max(len(line) for line in raw.split(b"\r\n"))


LONG_LINES: list[dict[str, Any]] = [
    {"text": "x" * 5000},
    {"text": "Grüße " * 1000},
    {"text": "ok", "html": "<p>" + "y" * 5000 + "</p>"},
    {"text": "ok", "html": "<p>" + "ü" * 3000 + "</p>"},
    {"text": "ok", "attachments": [attachment()], "html": "<p>" + "z" * 3000 + "</p>"},
]


async def test_json_long_lines_go_out_encoded(env: Env) -> None:
    for fields in LONG_LINES:
        r = await env.api.post(MESSAGES, json={"from": "alice@example.com", "to": TO, **fields})
        assert r.status_code == 202, r.text
        assert longest_line(await env.stored_raw(r.json()["id"])) <= MAX_LINE, fields


async def test_healthz_answers_while_a_heavy_message_is_composed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worst body the limits allow (recipients with display names, attachments, header fields): while it is
    composed, /healthz is answered.  Composing is held until a /healthz has been answered: off the event loop
    that happens at once; on it (the old code) the loop is blocked, no /healthz can be answered, and the hold
    runs out after 10 s with the flag unset."""
    started, answered = threading.Event(), threading.Event()
    answered_in_time: list[bool] = []
    compose = messages_api.from_request

    def held_compose(*args: Any, **kwargs: Any) -> Any:
        started.set()
        answered_in_time.append(answered.wait(10))
        return compose(*args, **kwargs)

    monkeypatch.setattr(messages_api, "from_request", held_compose)
    body = (
        '{"from": "alice@example.com", "to": ['
        + ", ".join(f'"Recipient number {i} <r{i}@example.com>"' for i in range(DEFAULT_MAX_RECIPIENTS))
        + '], "html": "<p>hello</p>", "headers": {'
        + ", ".join(f'"X-Header-{i}": "value {i}"' for i in range(MAX_HEADERS))
        + '}, "attachments": ['
        + ", ".join(f'{{"filename": "f{i}.txt", "content_base64": "{QQ}"}}' for i in range(MAX_ATTACHMENTS))
        + "]}"
    ).encode()
    post = asyncio.create_task(env.api.post(MESSAGES, content=body, headers={"Content-Type": "application/json"}))
    assert await asyncio.to_thread(started.wait, 10), "the message was never composed"
    health = await env.api.get("/healthz")
    answered.set()
    r = await post
    assert health.status_code == 200 and r.status_code == 202, r.text
    assert answered_in_time == [True]


NASTY = [
    "", " ", "\t", "\x00", "\r", "\n", "\r\n", "\x0b", "\x85", "\u2028", "=?utf-8?q?a?=", "<", ">", "<<>>", '"',
    '"a"@', "a@", "@", "@b", "a@b", "a@b.c", "a@[1.2.3.4]", "(comment)", "a,b", ";", ":", "\\", "ü", "😀",
    "x" * 1000, "a" * 77 + "@example.com", "a@" + "b" * 300 + ".com", "\udcff", "Name <a@b.c>, Other <c@d.e>",
    "group: a@b.c;", "undisclosed-recipients:;", "<a@b.c>", "<<<>>>", "Mon, 32 Foo 2024", "-1", "1.0",
]  # fmt: skip
HEADER_NAMES = [
    "Message-ID", "message-id", "In-Reply-To", "References", "Resent-Date", "Resent-Message-ID", "Orig-Date",
    "MIME-Version", "Resent-To", "Resent-From", "Sender", "X-Tag", "Keywords", "Comments", "Received",
    "List-Unsubscribe", "X" * 80, "Bad Name", "X:Y", "é",
]  # fmt: skip


def nasty(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(NASTY)
    return "".join(rng.choice(NASTY + list(string.printable)) for _ in range(rng.randint(1, 6)))


def random_fields(rng: random.Random) -> dict[str, Any]:
    fields: dict[str, Any] = {"from": "alice@example.com", "to": [nasty(rng) if rng.random() < 0.2 else "b@x.io"]}
    for name in ("from", "reply_to", "subject", "text", "html"):
        if rng.random() < 0.2:
            fields[name] = nasty(rng)
    for name in ("cc", "bcc"):
        if rng.random() < 0.2:
            fields[name] = [nasty(rng) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.3:
        fields["headers"] = {rng.choice(HEADER_NAMES): nasty(rng) for _ in range(rng.randint(1, 3))}
    if rng.random() < 0.2:
        fields["attachments"] = [
            {"filename": nasty(rng), "content_type": rng.choice(["text/plain", nasty(rng)]), "content_base64": QQ}
        ]
    return fields


async def test_fuzzed_json_requests_get_202_or_422_never_500(env: Env) -> None:
    rng = random.Random(20261205)
    seen: dict[int, int] = {}
    for _ in range(600):
        fields = random_fields(rng)
        # Encoded here: a lone surrogate (U+DCFF) goes as its JSON escape, which httpx's encoder refuses.
        r = await env.api.post(MESSAGES, content=json.dumps(fields), headers={"Content-Type": "application/json"})
        assert r.status_code in (202, 413, 422), (fields, r.status_code, r.text)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        if r.status_code == 202:
            raw = await env.stored_raw(r.json()["id"])
            assert longest_line(raw) <= MAX_LINE, fields
            assert (
                b"\x00" not in raw and b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
            ), fields
    assert seen.get(202, 0) > 50 and seen.get(422, 0) > 50, seen  # both kinds of answer, often


async def test_fuzzed_raw_requests_get_202_or_422_never_500(env: Env) -> None:
    rng = random.Random(5122026)
    for _ in range(400):
        fields = [(rng.choice([*HEADER_NAMES, "To", "From", "Cc", "Bcc", "Subject"]), nasty(rng)) for _ in range(3)]
        head = "".join(f"{name}: {value}\r\n" for name, value in fields)
        raw = (HEAD.decode() + head + "\r\n" + nasty(rng) + "\r\n").encode("utf-8", "surrogateescape")
        r = await env.api.post(MESSAGES, content=raw, headers=RAW)
        assert r.status_code in (202, 413, 422), (raw, r.status_code, r.text)
        if r.status_code == 202:
            assert longest_line(await env.stored_raw(r.json()["id"])) <= MAX_LINE, raw


async def test_provider_recipient_limit_is_checked_before_parsing(make_env: EnvFactory) -> None:
    env: Env = await make_env(providers_toml="[providers.google]\nmax_recipients = 3\n")
    await env.api.put(f"{API}/oauth/config", json={"provider": "google", "client_id": "c", "client_secret": "s"})
    # Invalid addresses too: the count is refused before any address is read.
    r = await env.api.post(MESSAGES, json={"to": ["x", "y", "z", "w"]})
    assert r.status_code == 422 and "at most 3" in r.json()["fields"]["recipients"], r.text
    r = await env.api.post(
        MESSAGES,
        json={"from": "a@example.com", "to": ["b@example.com"] * 5, "attachments": [attachment()]},
    )
    assert r.status_code == 202, r.text  # the same address five times is one recipient


async def test_control_characters_in_idempotency_key_are_refused(env: Env) -> None:
    for key in ("a\x00b", "a\x01b", "a\x7fb"):
        r = await env.api.post(MESSAGES, json={"from": "alice@example.com", "to": TO}, headers={"Idempotency-Key": key})
        assert r.status_code == 422 and "Idempotency-Key" in r.json()["fields"], (key, r.text)
    assert await env.stored_count() == 0
