"""Attack on intake: a file of an allowed type that is not that type.

The type was judged by the name alone and the pseudonym search reads text, zlib streams and base64/hex, so anything
else got in: pseudonyms gzip-, bzip2- or xz-compressed in a ``.txt`` (or ``.json``, ``.md``, ``.csv`` after its
UTF-8 check... the CSV had one, the others none), a gzip file named ``.png``, and a real PNG with the list gzipped
after its end (outputs.md says a PNG is searched after its end, "compressed or not") or in a private chunk. Each was
stored, "review" at worst, and one checker's slip from release. Now a text type must be text and a PNG a PNG:
its chunks the standard ones, nothing after its end. (Main meanwhile landed its own image rule,
``content.check_image``, which refuses the PNG and SVG cases here; the text cases still failed on it.)
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from gateway.config import OutputSettings
from gateway.errors import ValidationError
from gateway.outputs import content, files

PSEUDONYMS = ["a3f9c2d1e4b5a6978877665544332211", "0123456789abcdef0123456789abcdef"]
MATCHER = content.PseudonymMatcher(PSEUDONYMS)
PAYLOAD = ("pseudo_id\n" + "\n".join(PSEUDONYMS) + "\n").encode()


def png(**text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(buffer, "PNG", pnginfo=info, dpi=(72, 72))
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_private_chunk(data: bytes, body: bytes) -> bytes:
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk(b"prVt", body) + data[end:]


DISGUISED = {
    "gzip in a .txt": ("list.txt", gzip.compress(PAYLOAD)),
    "bzip2 in a .txt": ("list.txt", bz2.compress(PAYLOAD)),
    "xz in a .md": ("list.md", lzma.compress(PAYLOAD)),
    "gzip in a .json": ("list.json", gzip.compress(PAYLOAD)),
    "gzip in a .html": ("list.html", gzip.compress(PAYLOAD)),
    "gzip in a .svg": ("list.svg", gzip.compress(PAYLOAD)),
    "a gzip file named .png": ("figure.png", gzip.compress(PAYLOAD)),
    "gzip after a PNG's end": ("figure.png", png() + gzip.compress(PAYLOAD)),
    "bzip2 after a PNG's end": ("figure.png", png() + bz2.compress(PAYLOAD)),
    "gzip in a private PNG chunk": ("figure.png", with_private_chunk(png(), gzip.compress(PAYLOAD))),
}


@pytest.mark.parametrize("case", list(DISGUISED))
def test_a_file_that_is_not_its_type_is_refused(case: str) -> None:
    name, data = DISGUISED[case]
    with pytest.raises(ValidationError):
        files.take_bytes(name, data, None, OutputSettings(), MATCHER)


ORDINARY = {
    "a PNG with text and dpi": ("figure.png", png(Software="matplotlib version3.9", Title="Admissions")),
    "UTF-8 text": ("notes.txt", "Méthode: counts by region.\r\n\tRounded to 5.\n".encode()),
    "UTF-8 with a BOM": ("table.csv", "\ufeffregion,count\nNorth,40\n".encode()),
    "UTF-16 with a BOM": ("notes.txt", "Counts by region.\n".encode("utf-16")),
    "an SVG": ("figure.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><text>40</text></svg>'),
    "an empty text file": ("empty.md", b""),
}


@pytest.mark.parametrize("case", list(ORDINARY))
def test_ordinary_files_of_each_type_are_taken(case: str) -> None:
    name, data = ORDINARY[case]
    files.take_bytes(name, data, None, OutputSettings(), MATCHER)
