"""The workspace side of the hand-over reads only regular files inside outputs/, never blocking, whatever the
researcher does to the folder meanwhile (finding 2 of issue 14). Both ways of opening are tested: openat2 with
its resolution restrictions, and the component-by-component O_NOFOLLOW walk used where openat2 is missing."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.handover import londonsde_handover as handover

libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD = 2, -100


@pytest.fixture(params=["openat2", "by-components"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(handover, "_openat2_works", None if request.param == "openat2" else False)
    yield request.param
    if request.param == "openat2":
        assert handover._openat2_works is not False, "this kernel has openat2: the test must not fall back"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    outputs = tmp_path / "outputs"
    (outputs / "tables").mkdir(parents=True)
    (outputs / "tables" / "ok.csv").write_text("region,F\nNorth,40\n")
    (outputs / "tables" / "ok.sdc.json").write_text('{"record": {}}')
    (outputs / ".hidden.csv").write_text("a\n1\n")
    (tmp_path / "secret_key").write_text("GATEWAY-SECRET\n")
    return tmp_path


def read(home: Path, name: str) -> bytes:
    return handover.read_output(name, home / "outputs", limit=1000)[1]


def test_a_regular_file_and_its_sidecar_are_read(home: Path, mode: str) -> None:
    clean, data, sidecar = handover.read_output("outputs/tables/ok.csv", home / "outputs", limit=1000)
    assert (clean, data, sidecar) == ("tables/ok.csv", b"region,F\nNorth,40\n", b'{"record": {}}')
    assert handover.list_outputs(home / "outputs") == [{"name": "tables/ok.csv", "size": 18}]


@pytest.mark.parametrize(("name", "message"), [
    ("../secret_key", "not a plain path"), ("tables/../../secret_key", "not a plain path"),
    ("/etc/passwd", "not a plain path"), (".hidden.csv", "hidden"), ("missing.csv", "no file"),
])
def test_names_outside_the_folder_are_refused(home: Path, mode: str, name: str, message: str) -> None:
    with pytest.raises(handover.Refused, match=message):
        read(home, name)


def test_symlinks_fifos_sockets_and_devices_are_refused_without_blocking(home: Path, mode: str) -> None:
    outputs = home / "outputs"
    (outputs / "link.csv").symlink_to(home / "secret_key")
    (outputs / "zero.csv").symlink_to("/dev/zero")
    (outputs / "linked_dir").symlink_to(home)
    os.mkfifo(outputs / "fifo.csv")  # nobody writes to it: a blocking open would hang forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(outputs / "sock.csv"))
    (outputs / "tables" / "big.txt").write_bytes(b"x" * 1001)
    devices = []
    if os.geteuid() == 0:  # a device node (a copy of /dev/zero's); inside a sandbox nobody can make one
        os.mknod(outputs / "dev.csv", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        devices = [("dev.csv", "not a regular file")]
    started = time.monotonic()
    for name, message in [("link.csv", "symbolic link"), ("zero.csv", "symbolic link"),
                          ("linked_dir/secret_key", "symbolic link"), ("fifo.csv", "not a regular file"),
                          ("sock.csv", "not a regular file"), ("tables/big.txt", "limit is 1,000"), *devices]:
        with pytest.raises(handover.Refused, match=message):
            read(home, name)
    assert time.monotonic() - started < 5
    server.close()
    assert [f["name"] for f in handover.list_outputs(outputs)] == ["tables/big.txt", "tables/ok.csv"]


def _swap(a: str, b: str, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE)


def test_the_swap_loop_never_yields_a_byte_from_outside_outputs(home: Path, mode: str) -> None:
    """renameat2(RENAME_EXCHANGE) swaps outputs/k.txt with a symlink to a secret, and outputs/d with a symlink
    to another folder, in a tight loop while the reader reads: every read is the real file or a refusal.
    (On main's code, gateway.outputs.files.take got the secret in about 1 read in 8: see the report.)"""
    outputs = home / "outputs"
    (outputs / "k.txt").write_text("ok\n")
    (outputs / "swap").symlink_to(home / "secret_key")
    (outputs / "d").mkdir()
    (outputs / "d" / "k.txt").write_text("ok\n")
    (home / "other").mkdir()
    (home / "other" / "k.txt").write_text("OTHER PROJECT\n")
    (outputs / "dswap").symlink_to(home / "other")
    swappers = [mp.get_context("fork").Process(target=_swap, args=(str(outputs / a), str(outputs / b), 3.0))
                for a, b in (("k.txt", "swap"), ("d", "dswap"))]
    for swapper in swappers:
        swapper.start()
    got: dict[bytes, int] = {}
    refused = 0
    while any(s.is_alive() for s in swappers):
        for name in ("k.txt", "d/k.txt"):
            try:
                data = read(home, name)
            except handover.Refused:
                refused += 1
                continue
            got[data] = got.get(data, 0) + 1
    for swapper in swappers:
        swapper.join()
    assert set(got) == {b"ok\n"}, got
    assert refused > 0 and got[b"ok\n"] > 0  # the swaps really happened while reading
