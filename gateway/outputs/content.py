"""What is inside an output file, whatever its type: the tables it holds and any record-level data.

Every allowed text type is read for tables: CSV (any common delimiter), TXT (tab, pipe, comma or
space-aligned columns), Markdown pipe tables, HTML ``<table>`` elements and JSON (arrays of records or of
rows, column- and index-oriented objects, pandas' "split" layout), anywhere in the document. Images
(PNG, SVG) are for a person to look at, and may carry no more than they draw (``check_image``); the text an SVG
draws is read for tables, and the text they carry (SVG text, every PNG chunk but the pixels, inflated when it is
compressed) is still searched.

Record-level data is looked for in three ways: too many rows, a column named or shaped like an identifier, and any
of the project's pseudonyms anywhere in the bytes. The pseudonym search does not trust the file's own structure or
encoding: it decodes UTF-8, UTF-16 and UTF-32 (with or without a byte order mark) and UTF-7, undoes HTML entities,
percent-encoding, JSON escapes, base64 and hex runs, reads the text an HTML, SVG or Markdown page shows (its tags
and comments gone), reads every table's columns downwards, and searches the text as it is, folded as a reader takes
it (lower case, fullwidth and accented forms undone, any script's digits and look-alike letters as 0-9 and a-f),
with every separator removed (so prefixes, suffixes, quotes, spaces and dashes do not hide a pseudonym) and
reversed. Truncated pseudonyms are found too: any run of 12 or more hex digits from anywhere in a pseudonym (its
start, its end or its middle: dropping a digit from each end of every pseudonym still leaves 30 that single out a
patient), by a sorted table of every 12-digit window of every pseudonym; a pseudonym that is not hex digits is found
whole, by an Aho-Corasick automaton. Messages name positions and counts, never the content, so a refusal cannot be
used to read data back out.
"""

from __future__ import annotations

import base64
import binascii
import csv
import html
import io
import json
import re
import struct
import sys
import threading
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import ahocorasick
import numpy as np

TEXT_TYPES = frozenset({"csv", "txt", "json", "md", "html"})
IMAGE_TYPES = frozenset({"png", "svg"})
MARKUP_TYPES = frozenset({"html", "svg", "md"})  # shown by a browser or a Markdown viewer, with their tags gone
MIN_FRAGMENT = 12  # hex digits from anywhere in a pseudonym that count as the pseudonym
_NIBBLE = np.full(256, 0, dtype=np.uint64)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint64)
_IS_HEX = np.zeros(256, dtype=np.int64)
_IS_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = 1
ENCODED_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
NOT_ALNUM = re.compile(r"[^0-9a-z]+")
# Letters of other scripts drawn like the hex letters (after NFKD and casefold), and every script's decimal digits
CONFUSABLE = {"\u0430": "a", "\u03b1": "a", "\u0251": "a", "\u044c": "b", "\u0185": "b", "\u0441": "c",
              "\u03f2": "c", "\u217d": "c", "\u0501": "d", "\u217e": "d", "\u0435": "e", "\u0454": "e",
              "\u0192": "f", "\u03dd": "f"}
IDENTIFIER_COLUMN = re.compile(
    r"^(nhs[\s_-]*(number|no|num)?|pseudo[\s_-]*id|pseudonym\w*|patient[\s_-]*(id|identifier|number)|"
    r"person[\s_-]*id|subject[\s_-]*id|mrn|hospital[\s_-]*number|chi[\s_-]*(number|no)?|date[\s_-]*of[\s_-]*birth|"
    r"dob|postcode|full[\s_-]*name|forename|surname|address)$", re.IGNORECASE)
ID_TOKEN = re.compile(r"^(?=.*\d)[A-Za-z0-9_:.-]{8,}$|^[0-9a-fA-F]{12,}$")
NHS_NUMBER = re.compile(r"^\d{3}[ -]?\d{3}[ -]?\d{4}$")
ID_COLUMN_MIN_ROWS = 20


@dataclass
class Table:
    """One table found in a file: where (for messages), its header and its rows of text.

    ``where`` names a position only ("table at line 3", "JSON table 2"), as messages may; ``path`` is where a JSON
    table sits by the document's own keys, which are the researcher's text, so it is for the checkers only.
    """

    where: str
    header: list[str]
    rows: list[list[str]]
    path: str = ""


@dataclass
class Contents:
    """What a file holds, as far as the checks can tell."""

    kind: str  # "text", "image" or "binary"
    structure: str  # how the tables were found, or "none"
    tables: list[Table] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # every decoding worth searching


# --- decoding -----------------------------------------------------------------------------------------------

def decodings(data: bytes) -> list[str]:
    """Every plausible text reading of the bytes (the first is the one used for tables)."""
    found: list[str] = []
    boms = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
            (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
    for bom, codec in boms:
        if data.startswith(bom):
            found.append(data.decode(codec, errors="replace"))
            break
    found.append(data.decode("utf-8", errors="replace"))
    if b"\x00" in data:
        for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
            usable = len(data) - len(data) % (4 if "32" in codec else 2)
            found.append(data[:usable].decode(codec, errors="ignore"))
            found.append(data[1:1 + usable - (4 if "32" in codec else 2)].decode(codec, errors="ignore"))
    found.append(data.decode("latin-1"))
    if b"+" in data:  # UTF-7 may write any character, a digit too, as base64 of its UTF-16 between '+' and '-'
        found.append(data.decode("utf-7", errors="replace"))
    unique: list[str] = []
    for text in found:
        if text not in unique:
            unique.append(text)
    return unique


def _decoded_runs(text: str) -> Iterator[str]:
    """Text hidden in base64 or hex runs (one level deep)."""
    for match in ENCODED_RUN.finditer(text):
        run = match.group(0)
        candidates: list[bytes] = []
        for decoder in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                candidates.append(decoder(run + "=" * (-len(run) % 4)))
            except (binascii.Error, ValueError):
                continue
        stripped = run.rstrip("=")
        if len(stripped) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", stripped):
            candidates.append(bytes.fromhex(stripped))
        for raw in candidates:
            yield raw.decode("latin-1")
            if b"\x00" in raw:
                yield raw.decode("utf-16-le", errors="ignore")


def search_texts(data: bytes, extension: str) -> list[str]:
    """The texts to search for pseudonyms: every decoding, unescaped, and what encoded runs hide."""
    texts = decodings(data)
    if extension == "png":
        texts.extend(png_text(data))
    if extension in MARKUP_TYPES:  # what a browser shows: tags and comments between a pseudonym's parts are gone
        texts.extend(shown for text in list(texts) if (shown := markup_text(text)))
    if extension in TEXT_TYPES:  # every reading's tables, down their columns
        texts.extend(column for text in list(texts) for column in column_texts(text, extension))
    if extension == "json":  # every reading, as for the raw search: a file in UTF-16 without a BOM parses too
        texts.extend(strings for text in list(texts) for strings in json_strings(text))
    extra: list[str] = []
    for text in texts:
        for variant in (html.unescape(text), unquote(text)):
            if variant != text:
                extra.append(variant)
    texts.extend(extra)
    hidden = [run for text in texts for run in _decoded_runs(text)]
    return texts + hidden


class _ShownText(HTMLParser):
    """The text of an HTML, SVG or Markdown page's elements, joined with nothing between them."""

    HIDDEN = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def markup_text(text: str) -> str:
    """The text a page shows, without its tags, comments, scripts or styles ("" when it has no tags): a pseudonym
    split by ``<i></i>`` or ``<!--x-->`` in the source is whole on the screen."""
    if "<" not in text:
        return ""
    parser = _ShownText()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError):
        pass
    return "".join(parser.parts)


def json_strings(text: str) -> list[str]:
    """A JSON document's keys and strings as a parser reads them, in order, one per line ([] when it is not JSON):
    a pseudonym written with escapes (``\\u0039``, or ``\\n`` between its parts) is not in the raw text, but is in
    what any reader of the file gets back."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return []
    strings: list[str] = []
    stack: list[Any] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            for key, value in reversed(item.items()):
                stack.extend((value, key))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return ["\n".join(strings)] if strings else []


def png_text(data: bytes) -> list[str]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt), decompressed; [] when it is not a PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return []
    texts: list[str] = []
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IEND":  # whatever follows the image's end, compressed too
            texts.append(_inflated(data[position:]))
            break
        try:
            if kind == b"tEXt":
                texts.append(body.decode("latin-1"))
            elif kind == b"zTXt":
                keyword, _, rest = body.partition(b"\x00")
                texts.append(keyword.decode("latin-1") + " " + _inflate(rest[1:]).decode("latin-1"))
            elif kind == b"iTXt":
                keyword, _, rest = body.partition(b"\x00")
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\x00")
                _translated, _, rest = rest.partition(b"\x00")
                texts.append(keyword.decode("latin-1") + " "
                             + (_inflate(rest) if compressed else rest).decode("utf-8", errors="replace"))
            elif kind not in {b"IDAT", b"IEND"}:  # any other chunk (a private one too) may hold compressed text
                texts.append(_inflated(body))
        except (zlib.error, IndexError, UnicodeDecodeError):
            texts.append(body.decode("latin-1"))
    return texts


PNG_CHUNK_TEXT_LIMIT = 16 << 20  # a compressed chunk is read this far: 5 MB of zlib can unpack to 5 GB


def _inflate(stream: bytes) -> bytes:
    """A zlib stream decompressed as far as ``PNG_CHUNK_TEXT_LIMIT`` (zlib.error when it is not one)."""
    return zlib.decompressobj().decompress(stream, PNG_CHUNK_TEXT_LIMIT)


def _inflated(body: bytes) -> str:
    """The first zlib stream in a chunk's first bytes, decompressed as far as ``PNG_CHUNK_TEXT_LIMIT`` ("" for none):
    it may follow a keyword and flags, as in zTXt and iTXt."""
    for start in range(min(len(body) - 1, 128)):
        if body[start] & 0x0F != 8 or ((body[start] << 8) | body[start + 1]) % 31:
            continue  # not a zlib header
        try:
            return _inflate(body[start:]).decode("latin-1")
        except zlib.error:
            continue
    return ""


# --- pseudonyms ---------------------------------------------------------------------------------------------

_FOLD: dict[int, str] = {}


def fold(text: str) -> str:
    """Text as a reader takes it: compatibility forms (fullwidth, mathematical, circled) and accents undone,
    lower case, any script's decimal digits as 0-9 and look-alike letters of other scripts as a-f."""
    if text.isascii():
        return text.casefold()
    if not _FOLD:
        table = {ord(k): v for k, v in CONFUSABLE.items()}
        for point in range(0x80, sys.maxunicode + 1):
            if unicodedata.category(chr(point)) == "Nd":
                table[point] = str(unicodedata.decimal(chr(point)))
        _FOLD.update(table)
    return unicodedata.normalize("NFKD", text).casefold().translate(_FOLD)


class PseudonymMatcher:
    """Finds any of a set of pseudonyms in text, however it is dressed up (see the module docstring).

    For each pseudonym of more than ``MIN_FRAGMENT`` hex digits, every window of ``MIN_FRAGMENT`` digits is kept,
    as a 48-bit number in one sorted array (8 bytes a window, far less than an automaton's nodes), so a run of
    ``MIN_FRAGMENT`` digits from anywhere in a pseudonym is found, not only its first or last; any other
    pseudonym is found whole by one automaton.
    """

    def __init__(self, pseudonyms: Iterable[str]) -> None:
        folded = {NOT_ALNUM.sub("", fold(p)) for p in pseudonyms if p and p.strip()}
        folded.discard("")
        self.size = len(folded)
        patterns: set[str] = set()
        by_length: dict[int, list[str]] = {}
        for value in folded:
            if len(value) > MIN_FRAGMENT and re.fullmatch(r"[0-9a-f]+", value):
                by_length.setdefault(len(value), []).append(value)
            else:
                patterns.add(value)
        windows = [_windows(np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(-1, length))
                   for length, values in by_length.items()]
        self._windows = np.unique(np.concatenate([w.ravel() for w in windows])) if windows else \
            np.empty(0, dtype=np.uint64)
        self._automaton: Any = None
        if patterns:
            automaton = ahocorasick.Automaton()
            for pattern in patterns:
                automaton.add_word(pattern, len(pattern))
            automaton.make_automaton()
            self._automaton = automaton

    def __bool__(self) -> bool:
        return self.size > 0

    def _hits(self, text: str) -> int:
        if self._automaton is None or not text:
            return 0
        return sum(1 for _ in self._automaton.iter(text))

    def _window_hits(self, squashed: str) -> int:
        """How many windows of hex digits in the text (folded, only [0-9a-z] left) are windows of a pseudonym."""
        if not self._windows.size or len(squashed) < MIN_FRAGMENT:
            return 0
        digits = np.frombuffer(squashed.encode("ascii"), dtype=np.uint8)
        is_hex = np.concatenate(([0], np.cumsum(_IS_HEX[digits])))
        whole = (is_hex[MIN_FRAGMENT:] - is_hex[:-MIN_FRAGMENT]) == MIN_FRAGMENT  # windows of hex digits only
        if not whole.any():
            return 0
        found = _windows(digits.reshape(1, -1)).ravel()[whole]
        at = np.searchsorted(self._windows, found).clip(max=self._windows.size - 1)
        return int(np.count_nonzero(self._windows[at] == found))

    def count(self, texts: Iterable[str]) -> int:
        """How many pseudonym pieces the texts hold (0 means none was found); stops at the first text with any."""
        if not self:
            return 0
        for text in texts:
            folded = fold(text)
            squashed = NOT_ALNUM.sub("", folded)
            reversed_ = squashed[::-1]
            hits = (self._hits(folded) + self._hits(squashed) + self._hits(reversed_)
                    + self._window_hits(squashed) + self._window_hits(reversed_))
            if hits:
                return hits
        return 0


def _windows(digits: np.ndarray) -> np.ndarray:
    """Every ``MIN_FRAGMENT``-digit window of each row of ASCII hex digits, as 48-bit numbers (rows by windows)."""
    nibbles = _NIBBLE[digits]
    count = digits.shape[1] - MIN_FRAGMENT + 1
    value = np.zeros((digits.shape[0], count), dtype=np.uint64)
    for k in range(MIN_FRAGMENT):
        value = (value << np.uint64(4)) | nibbles[:, k:k + count]
    return value


_CACHE: dict[tuple[str, float], PseudonymMatcher] = {}
_CACHE_LOCK = threading.Lock()


def matcher_for_extracts(folders: Iterable[Path]) -> PseudonymMatcher:
    """The matcher of every pseudonym in any of these extract versions (cached while their manifests are unchanged)."""
    built = sorted({f for f in folders if (f / "manifest.json").is_file()})
    if not built:
        return PseudonymMatcher(())
    key = tuple((str(f), (f / "manifest.json").stat().st_mtime) for f in built)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    import pyarrow.parquet as pq

    from gateway.extracts.pipeline import PSEUDONYM_COLUMN

    found: set[str] = set()
    for folder in built:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for table in manifest.get("tables", []):
            if PSEUDONYM_COLUMN not in {c.get("name") for c in table.get("columns", [])}:
                continue
            column = pq.read_table(folder / table["file"], columns=[PSEUDONYM_COLUMN]).column(0)
            found.update(str(v) for v in column.to_pylist() if v is not None)
    matcher = PseudonymMatcher(found)
    with _CACHE_LOCK:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = matcher
    return matcher


# --- images -------------------------------------------------------------------------------------------------
# An image is for a person to look at, and the checker's page shows what it draws. So an image may carry no more
# than it draws: a PNG only the chunks of a plain image, with a few words of text metadata (matplotlib writes its
# name and version), and nothing after its end; an SVG no element that holds other content (HTML, scripts, frames),
# no picture but an embedded PNG held to the same rule, and a few words that are not drawn (comments, <metadata>,
# <desc>, <title>). The text an SVG draws is read for tables like a text file's, as styling can hide it.

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHUNKS = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs",
                        b"bKGD", b"tIME", b"tEXt", b"zTXt", b"iTXt"})
IMAGE_NOTE_LIMIT = 2048  # characters of text an image may carry that it does not draw
SVG_NS = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
SVG_REFUSED = frozenset({"foreignObject", "script", "iframe", "object", "embed", "audio", "video", "feImage",
                         "handler", "listener"})
SVG_NOT_DRAWN = frozenset({"metadata", "desc", "title", "style"})  # a stylesheet's text is not drawn either
SVG_GEOMETRY = frozenset({"d", "points", "transform", "style", "viewBox", "href", XLINK_HREF})  # not read as text
SVG_ATTRIBUTE_LIMIT = 512  # characters in any other attribute (an id, a class, a font list), where nothing is drawn
# What shapes, transforms and view boxes are written with: numbers, separators and command letters, nothing else
SVG_GRAMMAR = {"d": re.compile(r"[\sMmLlHhVvCcSsQqTtAaZz0-9eE.,+-]*"),
               "points": re.compile(r"[\s0-9eE.,+-]*"),
               "viewBox": re.compile(r"[\s0-9eE.,+-]{0,100}"),
               "transform": re.compile(r"[\s0-9eE.,+()a-zA-Z-]{0,512}")}
SVG_STYLE = re.compile(r"(?:[^/u]|/(?!\*)|u(?!rl\()|url\(#[\w.-]{1,100}\))*")  # no comments, url() only to #id
SVG_LOCAL_LINK = re.compile(r"#[\w.:-]{1,200}")
EMBEDDED_PNG = "data:image/png;base64,"


class ImageRefused(ValueError):
    """Why an image cannot be an output (the message names no content)."""


PNG_FIXED_LENGTHS = {b"IHDR": (13,), b"IEND": (0,), b"gAMA": (4,), b"sRGB": (1,), b"pHYs": (9,), b"cHRM": (32,),
                     b"tIME": (7,), b"bKGD": (1, 2, 6)}
PNG_MAX_LENGTHS = {b"sBIT": 4, b"tRNS": 256, b"PLTE": 768}
PNG_ONCE = frozenset({b"IHDR", b"PLTE", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs", b"bKGD",
                      b"tIME"})
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
PNG_MAX_PIXEL_BYTES = 256 << 20  # a larger image is refused rather than inflated
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _pixel_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """The exact size of a PNG's filtered pixel data: each row of each (Adam7) pass, with its filter byte."""
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0
        if columns and rows:
            total += rows * (1 + -(-columns * bits_per_pixel // 8))
    return total


def _inflate_exactly(stream: bytes, size: int | None, what: str) -> bytes:
    """A zlib stream that ends where its bytes end and, when ``size`` is given, inflates to exactly that size."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(stream, (size if size is not None else PNG_CHUNK_TEXT_LIMIT) + 1)
    except zlib.error:
        raise ImageRefused(f"its {what} is not a valid compressed stream") from None
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise ImageRefused(f"its {what} holds more than its compressed stream")
    if size is not None and len(out) != size:
        raise ImageRefused(f"its {what} does not hold exactly the pixels its header describes")
    return out


def check_png(data: bytes) -> list[str]:
    """Refuse a PNG that is more than a plain image; return the text it carries (its metadata).

    Every chunk is read as the format defines it: its CRC, a kind a plain image uses, each small chunk at its own
    length and at most once, a header that is a real one, and pixel data that inflates to exactly the rows the header
    describes with nothing after its stream; the text chunks' compressed streams end where they do. What is left for
    data is the pixels themselves, which the checkers look at."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageRefused("it is not a PNG image")
    position, seen, pixels = len(PNG_SIGNATURE), set(), []
    header: tuple[int, ...] = ()
    while True:
        if position + 12 > len(data):
            raise ImageRefused("it ends before its last chunk (IEND)")
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if position + 12 + length > len(data):
            raise ImageRefused("one of its chunks runs past the end of the file")
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        position += 12 + length
        if not seen and kind != b"IHDR":
            raise ImageRefused("it does not start with an image header (IHDR)")
        if kind not in PNG_CHUNKS:
            raise ImageRefused(f"it holds a chunk of a kind ({kind.decode('latin-1')!r}) a plain image does not "
                               "need; save the image again without it")
        if crc != zlib.crc32(kind + body):
            raise ImageRefused(f"its {kind.decode('latin-1')} chunk is damaged (its checksum does not match)")
        if kind in PNG_ONCE and kind in seen:
            raise ImageRefused(f"it holds more than one {kind.decode('latin-1')} chunk")
        if length not in PNG_FIXED_LENGTHS.get(kind, (length,)) or length > PNG_MAX_LENGTHS.get(kind, length):
            raise ImageRefused(f"its {kind.decode('latin-1')} chunk is not the size that chunk has")
        if kind == b"PLTE" and length % 3:
            raise ImageRefused("its palette is not a whole number of colours")
        seen.add(kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            pixels.append(body)
        elif kind in (b"zTXt", b"iTXt"):
            _check_text_stream(kind, body)
        elif kind == b"IEND":
            break
    if position != len(data):
        raise ImageRefused("it has data after the image's end (IEND)")
    width, height, depth, colour, compression, filtering, interlace = header
    if (not width or not height or colour not in PNG_CHANNELS or depth not in PNG_DEPTHS[colour] or compression
            or filtering or interlace not in (0, 1)):
        raise ImageRefused("its image header is not a valid one")
    size = _pixel_bytes(width, height, PNG_CHANNELS[colour] * depth, bool(interlace))
    if size > PNG_MAX_PIXEL_BYTES:
        raise ImageRefused("it is too large an image")
    if not pixels:
        raise ImageRefused("it holds no pixels")
    _inflate_exactly(b"".join(pixels), size, "pixel data")
    texts = png_text(data)
    _limit_notes(texts, "text metadata")
    return texts


def _check_text_stream(kind: bytes, body: bytes) -> None:
    """A compressed text chunk's stream ends where the chunk does (nothing hidden after it)."""
    _keyword, _, rest = body.partition(b"\x00")
    if kind == b"zTXt":
        _inflate_exactly(rest[1:], None, "compressed text")
    elif rest[:1] == b"\x01":  # a compressed iTXt
        after = rest[2:]
        for _ in range(2):  # language tag, translated keyword
            after = after.partition(b"\x00")[2]
        _inflate_exactly(after, None, "compressed text")


def _limit_notes(texts: list[str], what: str) -> None:
    carried = sum(len(t.strip()) for t in texts)
    if carried > IMAGE_NOTE_LIMIT:
        raise ImageRefused(f"it carries {carried:,} characters of {what}, more than the {IMAGE_NOTE_LIMIT:,} an "
                           "image may hold besides what it draws")
    if any(text_tables(t) for t in texts):
        raise ImageRefused(f"its {what} holds a table; put tables in a CSV file")


def _svg_outside_the_tree(data: bytes) -> list[str]:
    """The comments of an SVG, read by expat as the document's own encoding says; refuse a processing instruction or
    a DOCTYPE with an internal subset, which carry text the element tree drops."""
    import xml.parsers.expat

    comments: list[str] = []

    def doctype(_name: str, _system: str | None, _public: str | None, internal_subset: int) -> None:
        if internal_subset:
            raise ImageRefused("its DOCTYPE has declarations of its own")

    def instruction(_target: str, _data: str) -> None:
        raise ImageRefused("it holds a processing instruction")

    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = doctype
    parser.ProcessingInstructionHandler = instruction
    parser.CommentHandler = comments.append
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError:
        raise ImageRefused("it is not a well-formed SVG document") from None
    return comments


def _check_svg_attributes(local: str, attributes: dict[str, str]) -> None:
    for name, value in attributes.items():
        grammar = SVG_GRAMMAR.get(name)
        if grammar is not None:
            if not grammar.fullmatch(value):
                raise ImageRefused(f"a {name} attribute holds more than numbers and the letters of its grammar")
        elif name == "style":
            if len(value) > 2 * SVG_ATTRIBUTE_LIMIT or not SVG_STYLE.fullmatch(value):
                raise ImageRefused("a style attribute is long, holds a comment or links outside the drawing")
        elif name in ("href", XLINK_HREF):
            if local != "image" and not SVG_LOCAL_LINK.fullmatch(value):
                raise ImageRefused("it links to something outside the drawing")
        elif len(value) > SVG_ATTRIBUTE_LIMIT:
            raise ImageRefused(f"one of its attributes holds more than {SVG_ATTRIBUTE_LIMIT} characters")
    if local == "image":
        links = [v for k, v in attributes.items() if k in ("href", XLINK_HREF)]
        if len(links) != 1 or not links[0].startswith(EMBEDDED_PNG):
            raise ImageRefused("it holds a picture that is not one embedded PNG")


def check_svg(data: bytes) -> list[str]:
    """Refuse an SVG that holds more than a drawing; return the text it draws (the tables in it are checked).

    Every attribute is held to what it is for: shapes and transforms to numbers and command letters, styles to a
    short declaration list with no comment and no link out, links to a place in the drawing (a picture to one
    embedded PNG, held to the PNG rule), anything else to 512 characters. Comments, metadata, descriptions, titles
    and stylesheets are not drawn: together at most 2,048 characters, with no table."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    notes = _svg_outside_the_tree(data)
    try:
        root = fromstring(data)  # a DOCTYPE naming the SVG DTD is fine (matplotlib writes one); entities are not
    except (ParseError, DefusedXmlException, ValueError):
        raise ImageRefused("it is not a well-formed SVG document (entity declarations are not accepted)") from None
    if root.tag != f"{SVG_NS}svg":
        raise ImageRefused("it is not an SVG drawing (its root is not <svg>)")
    drawn: list[str] = []
    hidden_under: set[int] = set()
    for element in root.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        local = tag.rpartition("}")[2]
        if local in SVG_REFUSED:
            raise ImageRefused(f"it holds a <{local}> element, which carries content that is not a drawing")
        if not tag.startswith(SVG_NS) and id(element) not in hidden_under:
            raise ImageRefused("it holds an element that is not SVG outside its <metadata>")
        if id(element) in hidden_under or local in SVG_NOT_DRAWN:
            hidden_under.update(id(child) for child in element)
            notes.extend(t for t in (element.text, *element.attrib.values()) if t and t.strip())
        else:
            _check_svg_attributes(local, dict(element.attrib))
            drawn.extend(t for t in (element.text,) if t and t.strip())
            drawn.extend(v for k, v in element.attrib.items() if k not in SVG_GEOMETRY and "\n" in v)
        drawn.extend(t for t in (element.tail,) if t and t.strip())
        if local == "image":
            href = element.get("href") or element.get(XLINK_HREF) or ""
            try:
                picture = base64.b64decode(href[len(EMBEDDED_PNG):].strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ImageRefused("it holds an embedded PNG that is not valid base64") from None
            try:
                notes.extend(check_png(picture))
            except ImageRefused as exc:
                raise ImageRefused(f"a picture in it: {exc}") from None
    _limit_notes(notes, "text that is not drawn (comments, metadata, descriptions)")
    return ["\n".join(drawn)]


def check_image(data: bytes, extension: str) -> list[str]:
    """ImageRefused unless the image is only an image; else the text it draws (none for a PNG), read for tables."""
    if extension == "png":
        check_png(data)
        return []
    return check_svg(data)


# --- tables -------------------------------------------------------------------------------------------------

def _blocks(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Runs of consecutive non-blank lines, with the number of the first."""
    start, block = 0, []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def _split(line: str, delimiter: str) -> list[str]:
    if delimiter == "spaces":  # aligned columns, as pandas' to_string prints them
        return re.split(r"\s{2,}", line.strip())
    if delimiter == "space":
        return line.split()
    if delimiter == "|":
        return [p.strip() for p in line.strip().strip("|").split("|")]
    return next(csv.reader([line], delimiter=delimiter))


def _delimited(block: list[str], first_line: int, label: str) -> Table | None:
    """The block as a table, with the delimiter that gives the most consistent columns (2 or more)."""
    best: tuple[int, list[list[str]]] | None = None
    # single spaces only in longer blocks, so two short lines of prose are not taken for a table
    for delimiter in ("\t", ",", ";", "|", "spaces", *(["space"] if len(block) >= 5 else [])):
        try:
            rows = [_split(line, delimiter) for line in block]
        except csv.Error:
            continue
        widths = [len(r) for r in rows]
        common = max(set(widths), key=widths.count)
        agreeing = widths.count(common)
        if common >= 2 and agreeing >= max(2, int(0.8 * len(rows))) and (best is None or agreeing > best[0]):
            best = (agreeing, rows)
    if best is None:
        return None
    rows = [r for r in best[1] if not all(re.fullmatch(r":?-{2,}:?", c.strip() or "-") for c in r)]
    if len(rows) < 2:
        return None
    return Table(f"{label} at line {first_line}", rows[0], rows[1:])


def text_tables(text: str, label: str = "table") -> list[Table]:
    lines = text.splitlines()
    found = []
    for start, block in _blocks(lines):
        table = _delimited(block, start, label)
        if table is not None:
            found.append(table)
    return found


def csv_table(text: str) -> list[Table]:
    """A whole CSV file as one table (delimiter sniffed among comma, semicolon, tab and pipe)."""
    sample = text[:20000]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|") if sample.strip() else csv.excel
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))  # blank lines kept: row i is line i, as the checker shows
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        return []
    return [Table("the table", rows[0], rows[1:])]


class _HtmlTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._stack: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append([])
        elif tag == "tr" and self._stack:
            self._stack[-1].append([])
        elif tag in {"td", "th"} and self._stack:
            if not self._stack[-1]:
                self._stack[-1].append([])
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None and self._stack:
            self._stack[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append([r for r in self._stack.pop() if r])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def html_tables(text: str) -> tuple[list[Table], str]:
    parser = _HtmlTables()
    parser.feed(text)
    parser.close()
    tables = [Table(f"HTML table {i}", rows[0], rows[1:]) for i, rows in enumerate(parser.tables, start=1) if rows]
    return tables, "\n".join(parser.text)


def _cell_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, default=str)


def json_tables(document: Any) -> list[Table]:
    """Tables anywhere in a JSON document (see the module docstring for the layouts)."""
    found: list[Table] = []

    def add(where: str, header: list[str], rows: list[list[Any]]) -> None:
        found.append(Table(f"JSON table {len(found) + 1}", header, [[_cell_text(v) for v in row] for row in rows],
                           where))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list) and node:
            if all(isinstance(item, dict) for item in node):
                header = list(dict.fromkeys(k for item in node for k in item))
                add(where, header, [[item.get(k) for k in header] for item in node])
                for item in node:
                    for key, value in item.items():
                        if isinstance(value, list | dict):
                            walk(value, f"{where}.{key}")
                return
            if all(isinstance(item, list) for item in node) and len(node) > 1:
                first = node[0]
                header = [_cell_text(v) for v in first] if all(isinstance(v, str) for v in first) else []
                add(where, header, node[1:] if header else node)
                return
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")
        elif isinstance(node, dict) and node:
            if {"columns", "data"} <= set(node) and isinstance(node["data"], list):
                add(where, [_cell_text(c) for c in node.get("columns") or []],
                    [r if isinstance(r, list) else [r] for r in node["data"]])
                return
            values = list(node.values())
            if all(isinstance(v, dict) for v in values) and len(values) > 1:  # index-oriented
                header = list(dict.fromkeys(k for v in values for k in v))
                add(where, ["", *header], [[key, *(v.get(k) for k in header)] for key, v in node.items()])
                return
            if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1 and len(values) > 1:
                add(where, list(node), [list(row) for row in zip(*values, strict=True)])  # column-oriented
                return
            for key, value in node.items():
                walk(value, f"{where}.{key}")

    walk(document, "$")
    return found


def drawn_tables(drawn: list[str]) -> list[Table]:
    """The tables in the text an image draws (``check_image``'s answer)."""
    return [t for text in drawn for t in text_tables(text, "SVG text table")]


def read_contents(data: bytes, extension: str) -> Contents:
    """Find the tables in a file of any allowed type."""
    texts = decodings(data)
    if extension in IMAGE_TYPES:
        try:
            drawn = check_image(data, extension)
        except ImageRefused:  # refused at intake; an image stored before that rule is for a person to read
            drawn = []
        tables = drawn_tables(drawn)
        return Contents("image", "svg text" if tables else "none", tables, texts)
    if extension not in TEXT_TYPES:
        return Contents("binary", "none", [], texts)
    tables, structure = _tables(texts[0], extension)
    return Contents("text", structure if tables else "none", tables, texts)


def _tables(text: str, extension: str) -> tuple[list[Table], str]:
    """The tables in one reading of a text file, and how they were found."""
    if extension == "csv":
        return csv_table(text), "csv"
    if extension == "json":
        try:
            return json_tables(json.loads(text)), "json"
        except (ValueError, RecursionError):
            return text_tables(text), "text (not valid JSON)"
    if extension == "html":
        tables, inner = html_tables(text)
        return tables + text_tables(inner, "text table"), "html"
    return text_tables(text), "text"  # txt and md: pipe tables, delimited and space-aligned columns


def column_texts(text: str, extension: str) -> list[str]:
    """Each table's columns read downwards, one column after another: a pseudonym written a few digits a row, with
    each row's label between the parts across, is whole down its column."""
    found = []
    for table in _tables(text, extension)[0]:
        rows = [table.header, *table.rows]
        width = max(len(row) for row in rows)
        found.append("\n".join("".join(row[j] for row in rows if j < len(row)) for j in range(width)))
    return found


# --- record-level data --------------------------------------------------------------------------------------

def nhs_number_valid(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    if not NHS_NUMBER.match(text.strip()) or len(digits) != 10:
        return False
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    return (0 if check == 11 else check) == int(digits[9]) and check != 10


def _column(table: Table, j: int) -> list[str]:
    return [row[j].strip() for row in table.rows if j < len(row) and row[j].strip()]


def identifier_columns(table: Table) -> list[tuple[int, str]]:
    """Columns (1-based) that look like identifiers by name or by content, with the reason."""
    width = max([len(table.header), *(len(r) for r in table.rows)], default=0)
    flagged: list[tuple[int, str]] = []
    for j in range(width):
        name = table.header[j].strip().strip("\"'") if j < len(table.header) else ""
        if name and IDENTIFIER_COLUMN.match(name):
            flagged.append((j + 1, "its name is that of a patient identifier"))
            continue
        values = _column(table, j)
        if values and sum(nhs_number_valid(v) for v in values) >= max(1, len(values) // 2):
            flagged.append((j + 1, "its values look like NHS numbers"))
            continue
        if len(values) >= ID_COLUMN_MIN_ROWS and len(set(values)) >= 0.9 * len(values) \
                and sum(bool(ID_TOKEN.match(v)) for v in values) >= 0.9 * len(values):
            flagged.append((j + 1, "its values are distinct codes, one per row, like record identifiers"))
    return flagged


def named_identifier_columns(table: Table) -> list[int]:
    return [j + 1 for j, name in enumerate(table.header) if IDENTIFIER_COLUMN.match(name.strip().strip("\"'"))]
