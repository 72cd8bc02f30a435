"""The workspace server's browser egress rules, on their own (infra/jupyterhub/singleuser/londonsde_egress.py).

The same module runs inside every workspace; tests/integration/workspaces/test_browser_egress.py drives it through a
real hub and a real sandboxed server.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

SINGLEUSER = Path(__file__).resolve().parents[3] / "infra" / "jupyterhub" / "singleuser"
if str(SINGLEUSER) not in sys.path:
    sys.path.insert(0, str(SINGLEUSER))

import londonsde_egress as egress  # noqa: E402

LIMIT = 2 * 1024 * 1024


def test_metadata_and_listings_are_always_served() -> None:
    assert egress.read_refusal(content=False, fmt="base64", size=10**9, is_file=True, limit=LIMIT) is None
    assert egress.read_refusal(content=True, fmt=None, size=4096, is_file=False, limit=LIMIT) is None


def test_base64_is_refused_before_anything_is_read() -> None:
    assert egress.read_refusal(content=True, fmt="base64", size=10, is_file=True, limit=LIMIT) == egress.BINARY_REFUSAL


def test_a_file_over_the_limit_or_equal_to_data_is_refused_before_reading() -> None:
    assert "3,145,728 bytes" in egress.read_refusal(content=True, fmt="text", size=3 * 1024 * 1024, is_file=True,
                                                    limit=LIMIT)
    assert egress.read_refusal(content=True, fmt=None, size=LIMIT, is_file=True, limit=LIMIT) is None
    assert egress.read_refusal(content=True, fmt=None, size=10, is_file=True, limit=LIMIT,
                               equals_data=True) == egress.DATA_COPY_REFUSAL


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "patients.csv").write_text("id,age\n1,40\n2,50\n")
    (root / "sub" / "blob.bin").write_bytes(bytes(range(256)) * 10)
    (root / "empty").write_bytes(b"")
    os.symlink("/etc/passwd", root / "link")
    return root


def test_data_index_finds_equal_bytes_whatever_the_name(data: Path, tmp_path: Path) -> None:
    index = egress.DataIndex.build(data)
    assert sorted(index.by_size) == [len("id,age\n1,40\n2,50\n"), 2560]  # no empty file, no link followed
    assert index._hashes == {}  # starting costs a stat per file; nothing is hashed until a size matches
    assert not index.matches_bytes(b"a" * 7)
    assert index._hashes == {}
    assert index.matches_bytes(b"id,age\n1,40\n2,50\n")
    assert list(index._hashes) == [str(data / "patients.csv")]  # hashed once, on demand
    assert not index.matches_bytes(b"id,age\n1,40\n2,51\n")  # same size, other bytes
    copy = tmp_path / "renamed.txt"
    copy.write_bytes((data / "sub" / "blob.bin").read_bytes())
    assert index.matches_path(copy)
    copy.write_bytes(b"x" * 2560)
    assert not index.matches_path(copy)
    os.symlink(data / "patients.csv", tmp_path / "alias.txt")
    assert not index.matches_path(tmp_path / "alias.txt")  # a link is not followed (the server refuses it anyway)
    assert not index.matches_path(tmp_path / "missing")


def test_content_is_checked_on_what_is_about_to_be_sent(data: Path) -> None:
    index = egress.DataIndex.build(data)
    text = {"type": "file", "format": "text", "content": "hello\n"}
    assert egress.content_refusal(text, LIMIT, index) is None
    assert egress.content_refusal({**text, "content": "id,age\n1,40\n2,50\n"}, LIMIT, index) == \
        egress.DATA_COPY_REFUSAL
    assert egress.content_refusal({**text, "content": "é" * (LIMIT // 2 + 1)}, LIMIT, index)  # bytes, not characters
    assert egress.content_refusal({"type": "file", "format": "base64", "content": "aGk="}, LIMIT, index) == \
        egress.BINARY_REFUSAL
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert egress.content_refusal({"type": "notebook", "format": "json", "content": notebook}, LIMIT, index) is None
    big = {**notebook, "cells": [{"cell_type": "raw", "source": "x" * LIMIT, "metadata": {}}]}
    assert egress.content_refusal({"type": "notebook", "format": "json", "content": big}, LIMIT, index)
    assert egress.content_refusal({"type": "directory", "format": "json", "content": [{"name": "a"}]}, LIMIT,
                                  index) is None
    assert egress.content_refusal({"type": "file", "format": "text", "content": None}, LIMIT, index) is None


NOTEBOOK = {"cells": [{"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": [],
                       "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize(("model", "exists", "refused"), [
    (None, False, False),  # PUT without a body: a new untitled notebook
    ({"type": "notebook"}, False, False),  # new empty notebook at a chosen name
    ({"type": "file", "ext": ".txt"}, False, False),  # new empty text file
    ({"type": "directory"}, False, False),
    ({"type": "notebook", "format": "json", "content": NOTEBOOK}, True, False),  # save of an open notebook
    ({"type": "notebook", "format": "json", "content": NOTEBOOK}, False, False),  # save as
    ({"type": "file", "format": "text", "content": "edited\n"}, True, False),  # save from the text editor
    ({"type": "file", "format": "text", "content": "linkage,file\n"}, False, True),  # text upload to a new name
    ({"type": "file", "format": "base64", "content": "aGk="}, True, True),  # JupyterLab's upload
    ({"type": "file", "format": "base64", "content": "aGk="}, False, True),
    ({"type": "notebook", "format": "base64", "content": "aGk="}, False, True),
    ({"type": "file", "format": "base64", "content": "aGk=", "chunk": 1}, False, True),  # chunked upload
    ({"type": "file", "format": "text", "content": "x", "chunk": -1}, True, True),
    ({"type": "notebook", "format": "text", "content": json.dumps(NOTEBOOK)}, True, True),
    ({"type": "directory", "content": "x"}, False, True),
    ({"type": "weird", "format": "text", "content": "x"}, False, True),
    ({"type": "file", "content": b"binary"}, True, True),
])
def test_uploads_are_refused_and_everyday_saves_are_not(model: dict | None, exists: bool, refused: bool) -> None:
    assert (egress.write_refusal(model, exists=exists, limit=LIMIT) is not None) is refused


def test_saves_over_the_limit_are_refused() -> None:
    big = {**NOTEBOOK, "cells": [{"cell_type": "raw", "source": "x" * LIMIT, "metadata": {}}]}
    assert "limit" in egress.write_refusal({"type": "notebook", "format": "json", "content": big}, exists=True,
                                           limit=LIMIT)
    assert egress.write_refusal({"type": "file", "format": "text", "content": "x" * (LIMIT + 1)}, exists=True,
                                limit=LIMIT)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONDONSDE_CONTENTS_MAX_BYTES", "4096")
    monkeypatch.setenv("LONDONSDE_TRAFFIC_REPORT_SECONDS", "7")
    assert (egress.max_bytes(), egress.report_seconds()) == (4096, 7.0)
    monkeypatch.setenv("LONDONSDE_CONTENTS_MAX_BYTES", "-1")
    monkeypatch.setenv("LONDONSDE_TRAFFIC_REPORT_SECONDS", "soon")
    assert (egress.max_bytes(), egress.report_seconds()) == (egress.DEFAULT_MAX_BYTES, egress.DEFAULT_REPORT_SECONDS)


class FakeStream:
    """Stands in for tornado's IOStream: only its write is wrapped."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self.sent.append(bytes(data))
        return len(data)


def test_every_byte_written_to_a_browser_stream_is_counted_and_reported_once() -> None:
    counter = egress.TrafficCounter()
    stream = FakeStream()
    egress.count_stream(stream, counter)
    stream.write(b"HTTP/1.1 200 OK\r\n\r\n")
    stream.write(memoryview(b"abcdef")[2:])
    stream.write(bytearray(b"xyz"))
    assert stream.sent == [b"HTTP/1.1 200 OK\r\n\r\n", b"cdef", b"xyz"]
    assert counter.total == 19 + 4 + 3
    pending = counter.take()
    assert pending == 26
    stream.write(b"12345")
    counter.done(pending)  # the gateway has the first 26; what came since is still pending
    assert counter.take() == 5


def test_a_failed_report_keeps_the_bytes_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    import londonsde_handover

    counter = egress.TrafficCounter()
    counter.add(100)
    calls: list[dict] = []

    def refuse(op: str, body: dict, timeout: float = 0) -> dict:
        calls.append({"op": op, **body})
        raise londonsde_handover.Refused("The gateway could not be reached")

    monkeypatch.setattr(londonsde_handover, "_hub_call", refuse)
    assert egress.report(counter) == 0 and counter.take() == 100
    monkeypatch.setattr(londonsde_handover, "_hub_call", lambda op, body, timeout=0: calls.append({"op": op, **body})
                        or {})
    assert egress.report(counter) == 100 and counter.take() == 0
    assert egress.report(counter) == 0  # nothing new: no call
    assert calls == [{"op": "traffic", "bytes": 100}, {"op": "traffic", "bytes": 100}]


def test_reports_do_not_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report still running when the next is due: the next sends nothing, so no byte is sent twice."""
    import threading

    import londonsde_handover

    counter = egress.TrafficCounter()
    counter.add(500)
    started, release, sent = threading.Event(), threading.Event(), []

    def slow(op: str, body: dict, timeout: float = 0) -> dict:
        sent.append(body["bytes"])
        started.set()
        release.wait(5)
        return {}

    monkeypatch.setattr(londonsde_handover, "_hub_call", slow)
    first = threading.Thread(target=egress.report, args=(counter,))
    first.start()
    assert started.wait(5)
    assert egress.report(counter) == 0  # skipped while the first runs
    release.set()
    first.join(5)
    counter.add(7)
    assert egress.report(counter, wait=True) == 7
    assert sent == [500, 7]


def test_hashing_reads_in_blocks(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    assert egress._hash_path(big) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_the_size_of_a_json_answer_counts_the_buffer_and_the_last_chunk() -> None:
    # the workspaces and settings APIs finish with a JSON string; anything already written counts too
    assert egress.answer_size([], None) == 0
    assert egress.answer_size([b"ab", b"c"], "dé") == 6
    assert egress.answer_size([], b"xyz") == 3
    assert egress.answer_size([b"{"], {"a": 1}) == 1 + len(json.dumps({"a": 1}))
