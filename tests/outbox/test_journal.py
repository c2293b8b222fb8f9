"""The delivery journal (SQLite): a worker's ``sent`` results are appended to a file of its own, folded into the
outbox later, and replayed by another worker when the one that wrote them died before folding them."""

from __future__ import annotations

import fcntl
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from mailgate.outbox import journal as journal_module
from mailgate.outbox import record
from mailgate.outbox.journal import DeliveryJournal, Entry, journal_directory
from mailgate.outbox.policy import Status
from mailgate.outbox.worker import Worker

from ..smtp.servers import RunningServer
from .conftest import Env, use_server
from .servers import ScriptedMailbox

MESSAGES = 12
#: The journal is SQLite's: these tests run on it only.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _entry(message_id: str = "m1", **values: Any) -> Entry:
    when = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    return Entry(message_id, "host:1:abc", {"status": "sent", "sent_at": when, "updated_at": when, **values})


def test_an_entry_is_one_line_and_reads_back_the_same() -> None:
    entry = _entry(attempts=2, recipient_results={"a@example.com": {"status": "sent", "code": 250, "reply": "OK"}})
    line = entry.line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Entry.parse(line) == entry


def _ids(path: Path) -> list[str]:
    return [Entry.parse(line).message_id for line in path.read_bytes().splitlines()]


def test_folded_lines_stay_until_the_file_is_worth_emptying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "TRUNCATE_BYTES", 3 * len(_entry("m1").line()))
    directory = tmp_path / "outbox.db-deliveries"
    journal = DeliveryJournal(directory, "host:1:abc")
    journal.append(_entry("m1"))
    journal.append(_entry("m2"))
    [path] = journal.paths
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(directory.stat().st_mode & 0o777) == "0o700"
    journal.folded(journal.mark())
    assert _ids(path) == ["m1", "m2"]  # small: kept (replaying them would change nothing)
    journal.append(_entry("m3"))
    mark = journal.mark()
    journal.append(_entry("m4"))  # while the fold commits
    journal.folded(mark)
    assert _ids(path) == ["m1", "m2", "m3", "m4"]  # m4 is not folded: the file is kept whole
    journal.folded(journal.mark())
    assert path.read_bytes() == b""  # everything folded, and large enough: emptied
    journal.append(_entry("m5"))
    assert _ids(path) == ["m5"] and journal.paths == [path]
    journal.close()
    assert list(directory.iterdir()) == []


def test_a_file_that_never_gets_quiet_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "ROTATE_BYTES", 2 * len(_entry("m1").line()))
    journal = DeliveryJournal(tmp_path / "j", "host:1:abc")
    journal.append(_entry("m1"))
    journal.append(_entry("m2"))
    [first] = journal.paths
    mark = journal.mark()  # full: later lines go to a new file
    journal.append(_entry("m3"))
    [_, second] = journal.paths
    assert _ids(first) == ["m1", "m2"] and _ids(second) == ["m3"]
    journal.folded(mark)
    assert not first.exists() and journal.paths == [second]
    journal.close()


def test_a_live_writer_s_files_are_not_orphans(tmp_path: Path) -> None:
    directory = tmp_path / "outbox.db-deliveries"
    journal = DeliveryJournal(directory, "host:1:abc")
    journal.append(_entry("m1"))
    # Locked by their (live) writer: not another worker's to replay.
    assert list(DeliveryJournal(directory, "host:2:def").orphans()) == []
    journal.close()


def test_the_files_of_a_writer_that_died_are_orphans(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "outbox.db-deliveries"
    dead = DeliveryJournal(directory, "host:1:abc")
    dead.append(_entry("m1"))
    dead.append(_entry("m2"))
    [path] = dead.paths
    with path.open("ab") as file:
        file.write(b'{"id": "m3", "own')  # a line cut short by a power failure
    assert dead._current is not None
    os.close(dead._current.fd)  # the process is gone: the kernel releases its lock
    survivor = DeliveryJournal(directory, "host:2:def")
    with caplog.at_level(logging.WARNING):
        [orphan] = list(survivor.orphans())
    assert [e.message_id for e in orphan.entries] == ["m1", "m2"]
    assert "unreadable" in caplog.text
    # Locked while it is replayed: a third worker leaves it alone.
    assert list(DeliveryJournal(directory, "host:3:ghi").orphans()) == []
    orphan.discard()
    assert not path.exists()


def test_no_journal_for_a_database_in_memory() -> None:
    assert journal_directory(":memory:") is None and journal_directory("") is None
    assert journal_directory("/var/lib/mailgate/mailgate.db") == Path("/var/lib/mailgate/mailgate.db-deliveries")


def _journals(env: Env) -> Path:
    directory = journal_directory(env.services.db.engine.url.database or "")
    assert directory is not None
    return directory


async def _queue(env: Env, smtp: RunningServer, ca_file: str) -> list[str]:
    await use_server(env, smtp, ca_file)
    return [await env.post(to=[f"r{i}@example.com"], subject=f"n{i}") for i in range(MESSAGES)]


async def test_only_sqlite_workers_keep_a_journal(env: Env) -> None:
    # PostgreSQL workers may run on other hosts: each result is committed to the database.
    journal = env.worker._recorder._journal
    assert (journal is not None) == env.services.db.is_sqlite
    if journal is not None:
        assert journal.directory == _journals(env) and journal.owner == env.worker.owner


@SQLITE_ONLY
async def test_sqlite_results_go_through_the_journal_and_are_folded_by_the_end_of_the_cycle(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _queue(env, smtp, ca_file)
    appended: list[str] = []
    append = DeliveryJournal.append

    def spy(journal: DeliveryJournal, entry: Entry) -> None:
        appended.append(entry.message_id)
        append(journal, entry)

    monkeypatch.setattr(DeliveryJournal, "append", spy)
    assert await env.worker.drain() == MESSAGES
    assert sorted(appended) == sorted(ids)
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}  # folded by the end of the cycle
    assert env.services.outbox.metrics.sent == MESSAGES
    await env.worker.close()
    assert list(_journals(env).iterdir()) == []  # deleted when the worker stops


@SQLITE_ONLY
async def test_results_that_cannot_be_folded_stay_in_the_journal_until_they_can(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _queue(env, smtp, ca_file)
    writes = env.services.outbox.writes
    execute_all = writes.execute_all
    broken = [True]

    async def failing_folds(statements: Any, **options: Any) -> list[int]:
        if broken[0] and any(params.get("status") == Status.SENT.value for _, params in statements):
            raise OperationalError("UPDATE outbox_messages ...", {}, OSError("disk I/O error"))
        result: list[int] = await execute_all(statements, **options)
        return result

    monkeypatch.setattr(writes, "execute_all", failing_folds)
    with pytest.raises(OperationalError):
        await env.worker.run_once()  # delivered; the fold at the end of the cycle fails
    box = smtp.handler
    assert isinstance(box, ScriptedMailbox) and len(box.messages) == MESSAGES
    assert {(await env.status(i))["status"] for i in ids} == {"sending"}
    assert list(_journals(env).glob("*.jsonl"))  # the results are still there

    broken[0] = False
    env.clock.advance(env.settings.outbox.lease_seconds + 1)  # their leases ran out meanwhile
    assert await env.worker.drain() == 0  # folded before the claim: nothing to send again
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    assert len(box.messages) == MESSAGES


@SQLITE_ONLY
async def test_another_worker_replays_the_journal_of_a_worker_that_died(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await _queue(env, smtp, ca_file)
    dead = env.worker

    async def never(self: record.Recorder) -> None:
        return None

    # The first worker delivers everything, and dies before folding its journal into the outbox.
    monkeypatch.setattr(record.Recorder, "fold", never)
    assert await dead.drain() == MESSAGES
    timer = dead._recorder._fold_timer
    if timer is not None:
        timer.cancel()  # dead: no fold will come
    monkeypatch.undo()
    journal = dead._recorder._journal
    assert journal is not None
    [path] = list(_journals(env).glob("*.jsonl"))
    assert len(path.read_bytes().splitlines()) == MESSAGES
    assert {(await env.status(i))["status"] for i in ids} == {"sending"}

    survivor: Worker = env.new_worker()
    # While the first worker lives (its lock held) its journal is left alone, and its leases are respected.
    assert await survivor.drain() == 0
    assert path.exists()

    # It dies: its file descriptors closed by the kernel, its lock with them.
    assert journal._current is not None
    os.close(journal._current.fd)
    journal._current = None
    env.clock.advance(env.settings.outbox.lease_seconds + 1)
    with caplog.at_level(logging.WARNING):
        assert await survivor.drain() == 0  # replayed before claiming: nothing is sent twice
    assert f"{MESSAGES} of its {MESSAGES} result(s) were not recorded yet" in caplog.text
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    box = smtp.handler
    assert isinstance(box, ScriptedMailbox) and len(box.messages) == MESSAGES
    assert not path.exists()
    await survivor.close()


def test_a_journal_file_is_locked_by_its_writer(tmp_path: Path) -> None:
    journal = DeliveryJournal(tmp_path / "j", "w")
    journal.append(_entry())
    [path] = journal.paths
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    journal.close()


@SQLITE_ONLY
async def test_a_journal_that_cannot_be_written_gives_way_to_the_database(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await _queue(env, smtp, ca_file)
    # The journal's directory cannot be created (a read-only place, a full disk).
    directory = _journals(env)
    directory.parent.joinpath(directory.name).write_bytes(b"not a directory")
    with caplog.at_level(logging.INFO):
        assert await env.worker.drain() == MESSAGES
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    box = smtp.handler
    assert isinstance(box, ScriptedMailbox) and len(box.messages) == MESSAGES  # each once, none held back
    assert caplog.text.count("cannot write the delivery journal") == 1  # said once, not per message
    assert env.services.outbox.metrics.sent == MESSAGES


def test_after_a_failed_write_lines_go_to_a_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = DeliveryJournal(tmp_path / "j", "w")
    journal.append(_entry("m1"))
    [first] = journal.paths
    write = os.write
    monkeypatch.setattr(journal_module.os, "write", lambda fd, data: write(fd, data[:5]))  # the disk fills up
    with pytest.raises(OSError):
        journal.append(_entry("m2"))
    monkeypatch.undo()
    journal.append(_entry("m3"))
    [_, second] = journal.paths
    assert _ids(second) == ["m3"]  # not glued to the cut line
    assert first.read_bytes().splitlines()[0] == _entry("m1").line().rstrip(b"\n")
    journal.folded(journal.mark())
    assert not first.exists()
    journal.close()
