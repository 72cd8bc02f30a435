"""The output state table and the intake rules, without a database."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from gateway.config import OutputSettings
from gateway.errors import InvalidTransition, ValidationError
from gateway.outputs import files
from gateway.outputs.checks import check_heuristic
from gateway.outputs.content import PseudonymMatcher
from gateway.outputs.workflow import OUTPUT_OWNERS, OUTPUT_TRANSITIONS, OutputState, check_output_move
from projects.demo_people import minimal_png


def test_every_state_has_an_owner_and_is_reachable_from_pending() -> None:
    assert set(OUTPUT_OWNERS) == set(OutputState)
    reached, frontier = {OutputState.PENDING}, [OutputState.PENDING]
    while frontier:
        state = frontier.pop()
        for (source, target) in OUTPUT_TRANSITIONS:
            if source == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(OutputState)
    finals = {s for s, owner in OUTPUT_OWNERS.items() if owner == "final"}
    assert finals == {OutputState.REJECTED, OutputState.WITHDRAWN, OutputState.RELEASED}
    assert not [t for t in OUTPUT_TRANSITIONS if t[0] in finals]


def test_a_rejected_request_is_final_and_release_needs_approval() -> None:
    with pytest.raises(InvalidTransition):
        check_output_move("rejected", OutputState.SUBMITTED)
    with pytest.raises(InvalidTransition):
        check_output_move("partially_reviewed", OutputState.APPROVED)
    with pytest.raises(InvalidTransition):
        check_output_move("reviewed", OutputState.RELEASED)


LIMITS = OutputSettings(max_file_bytes=1000, max_csv_rows=3)
PSEUDONYMS = PseudonymMatcher(["9f86d081884c7d659a2f3c1e5b7a9d11", "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"])
P = "9f86d081884c7d659a2f3c1e5b7a9d11"
PNG_HEAD, PNG_END = minimal_png()[:-12], minimal_png()[-12:]  # a plain image, and its last chunk (IEND)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_handed_over_bytes_are_taken_with_their_hash() -> None:
    taken = files.take_bytes("tables/ok.csv", b"region,F,M\nNorth,40,35\n", None, LIMITS, PSEUDONYMS)
    assert (taken.path, taken.content_type, taken.sdc_record) == ("tables/ok.csv", "text/csv", None)
    assert taken.sha256 == hashlib.sha256(b"region,F,M\nNorth,40,35\n").hexdigest()


@pytest.mark.parametrize(("name", "message"), [
    ("../outside.csv", "plain path"), ("tables/../../outside.csv", "plain path"), ("/etc/passwd", "Name the file"),
    (".secret.csv", "Hidden files"), ("tables/.x/a.csv", "Hidden files"), ("data.parquet", "allowed types"),
    ("a/b/c/d/e.csv", "at most 4 levels"), ("bad\nname.csv", "only letters"), ("-x.csv", "start with a letter"),
])
def test_names_that_are_not_plain_paths_dotfiles_and_unknown_types_are_refused(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        files.take_bytes(name, b"a,b\n1,2\n", None, LIMITS)


def test_large_files_and_long_tables_of_any_type_are_refused() -> None:
    with pytest.raises(ValidationError, match="the limit is 1,000 bytes"):
        files.take_bytes("big.txt", b"x" * 1001, None, LIMITS)
    with pytest.raises(ValidationError, match="4 rows; at most 3"):
        files.take_bytes("long.csv", b"a\n1\n2\n3\n4\n", None, LIMITS)
    with pytest.raises(ValidationError, match="4 rows; at most 3"):
        files.take_bytes("long.json", json.dumps([{"a": i, "b": i} for i in range(4)]).encode(), None, LIMITS)
    with pytest.raises(ValidationError, match="4 rows; at most 3"):
        files.take_bytes("long.md", b"| a | b |\n|---|---|\n" + b"| 1 | 2 |\n" * 4, None, LIMITS)


@pytest.mark.parametrize("column", ["nhs_number", "pseudo_id", "Patient ID", "person_id", "DOB"])
@pytest.mark.parametrize("layout", ["csv", "txt", "json", "md", "html"])
def test_a_table_with_an_identifier_column_is_blocked_in_every_type(column: str, layout: str) -> None:
    body = {
        "csv": f"{column},n\nx,12\n", "txt": f"{column}\tn\nx\t12\n",
        "json": json.dumps([{column: "x", "n": 12}]), "md": f"| {column} | n |\n|---|---|\n| x | 12 |\n",
        "html": f"<table><tr><th>{column}</th><th>n</th></tr><tr><td>x</td><td>12</td></tr></table>",
    }[layout]
    with pytest.raises(ValidationError, match="named like a patient identifier"):
        files.take_bytes(f"rows.{layout}", body.encode(), None, LIMITS)


ATTACKS = {  # finding 3 and what an attacker tries next: the pseudonym dressed up, in every type
    "plain csv": ("rows.csv", f"code,n\n{P},12\n".encode()),
    "renamed column with a prefix": ("rows.csv", f"ref,n\nX-{P},12\n".encode()),
    "suffix and upper case": ("rows.csv", f"ref,n\n{P.upper()}_2024,12\n".encode()),
    "split by dashes": ("rows.txt", "-".join(P[i:i + 4] for i in range(0, 32, 4)).encode()),
    "split across two cells": ("rows.csv", f"a,b\n{P[:16]},{P[16:]}\n".encode()),
    "reversed": ("rows.txt", P[::-1].encode()),
    "truncated to its first 12": ("rows.txt", f"id {P[:12]}".encode()),
    "json record": ("rows.json", json.dumps([{"id": P, "region": "North"}]).encode()),
    "json nested key": ("rows.json", json.dumps({"people": {P: {"n": 1}}}).encode()),
    "tsv text": ("rows.txt", f"who\tregion\n{P}\tNorth\n".encode()),
    "markdown table": ("rows.md", f"| who | n |\n|---|---|\n| {P} | 1 |\n".encode()),
    "html table": ("rows.html", f"<table><tr><td>{P}</td></tr></table>".encode()),
    "html entities": ("rows.html", "".join(f"&#{ord(c)};" for c in P).encode()),
    "percent-encoded": ("rows.txt", "".join(f"%{ord(c):02x}" for c in P).encode()),
    "utf-16 with a BOM": ("rows.txt", f"id\n{P}\n".encode("utf-16")),
    "utf-16 without a BOM": ("rows.csv", f"id\n{P}\n".encode("utf-16-le")),
    "base64": ("rows.txt", base64.b64encode(f"id={P}".encode())),
    "hex of the text": ("rows.txt", P.encode().hex().encode()),
    "in an svg": ("plot.svg", f'<svg xmlns="http://www.w3.org/2000/svg"><text>{P}</text></svg>'.encode()),
    "in a png text chunk": ("plot.png", PNG_HEAD + _png_chunk(b"tEXt", b"Note\x00" + P.encode()) + PNG_END),
    "in the file name": (f"{P}.csv", b"a,b\n1,2\n"),
    "json unicode escapes": ("rows.json", ('["' + "".join(f"\\u{ord(c):04x}" for c in P) + '"]').encode()),
    "json unicode escapes in utf-16 without a byte order mark": (
        "rows.json", ('["' + "".join(f"\\u{ord(c):04x}" for c in P) + '"]').encode("utf-16-le")),
    "json split by escaped newlines": ("rows.json", json.dumps({"note": "\n".join(P[i:i + 8] for i in range(0, 32, 8))})
                                       .encode()),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_project_pseudonym_anywhere_in_any_form_is_blocked(attack: str) -> None:
    name, data = ATTACKS[attack]
    files.take_bytes("harmless.txt", b"North 40\nSouth 35\n", None, LIMITS, PSEUDONYMS)  # nothing to find: fine
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take_bytes(name, data, None, LIMITS, PSEUDONYMS)


TRUNCATED = {  # only a pseudonym's first and last 12 digits were searched: one digit off each end hid all 30 others
    "a digit cut from each end": ("rows.csv", f"ref,n\nx{P[1:31]}x,12\n".encode()),
    "its middle 12 digits": ("rows.txt", f"id {P[10:22]}".encode()),
    "its middle, reversed": ("rows.txt", P[4:28][::-1].encode()),
    "its middle, split across cells": ("rows.csv", f"a,b\n{P[2:16]},{P[16:30]}\n".encode()),
    "its middle in the sidecar-free json": ("rows.json", json.dumps([{"id": P[1:31].upper()}]).encode()),
}


@pytest.mark.parametrize("attack", sorted(TRUNCATED))
def test_any_twelve_digits_from_anywhere_in_a_pseudonym_are_blocked(attack: str) -> None:
    name, data = TRUNCATED[attack]
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take_bytes(name, data, None, LIMITS, PSEUDONYMS)
    files.take_bytes("short.txt", f"id {P[10:21]}".encode(), None, LIMITS, PSEUDONYMS)  # 11 digits: not a match


MARKUP = {  # a page or drawing shows a pseudonym whole that its source splits with tags, each part under 12 digits
    "html split by empty tags": ("page.html", ("<p>" + "<i></i>".join(P[i:i + 8] for i in range(0, 32, 8))
                                               + "</p>").encode()),
    "html split by comments": ("page.html", ("<p>" + "<!--x-->".join(P[i:i + 8] for i in range(0, 32, 8))
                                             + "</p>").encode()),
    "html split across table cells of one row": ("page.html", ("<table><tr>" + "".join(
        f"<td>{P[i:i + 8]}</td>" for i in range(0, 32, 8)) + "</tr></table>").encode()),
    "svg tspans": ("plot.svg", ('<svg xmlns="http://www.w3.org/2000/svg"><text>' + "".join(
        f"<tspan>{P[i:i + 8]}</tspan>" for i in range(0, 32, 8)) + "</text></svg>").encode()),
    "markdown with inline html": ("notes.md", ("Case " + "<b></b>".join(P[i:i + 8] for i in range(0, 32, 8))
                                               + "\n").encode()),
}


@pytest.mark.parametrize("attack", sorted(MARKUP))
def test_a_pseudonym_split_by_markup_is_blocked(attack: str) -> None:
    name, data = MARKUP[attack]
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take_bytes(name, data, None, LIMITS, PSEUDONYMS)


def _look_alike(text: str, letters: dict[str, str]) -> str:
    return "".join(letters.get(c, c) for c in text)


LOOK_ALIKES = {  # characters a reader takes for the pseudonym's digits and letters, but the search dropped
    "fullwidth": ("rows.csv", ("a,b\nx," + "".join(chr(ord(c) + 0xFEE0) for c in P) + "\n").encode()),
    "mathematical bold digits": ("rows.txt", "".join(chr(0x1D7CE + int(c)) if c.isdigit() else c for c in P)
                                 .encode()),
    "arabic-indic digits": ("rows.txt", "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in P).encode()),
    "letters with accents": ("rows.txt", _look_alike(P, {"a": "\u00e1", "c": "\u00e7", "e": "\u00e9", "d": "\u010f"})
                             .encode()),
    "combining accents on letters": ("rows.txt", "".join(c + "\u0301" if c.isalpha() else c for c in P).encode()),
    "cyrillic a, c, e": ("rows.txt", _look_alike(P, {"a": "\u0430", "c": "\u0441", "e": "\u0435"}).encode()),
    "fullwidth in utf-16": ("rows.txt", "".join(chr(ord(c) + 0xFEE0) for c in P).encode("utf-16")),
}


@pytest.mark.parametrize("attack", sorted(LOOK_ALIKES))
def test_a_pseudonym_in_look_alike_characters_is_blocked(attack: str) -> None:
    name, data = LOOK_ALIKES[attack]
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take_bytes(name, data, None, LIMITS, PSEUDONYMS)


DOWN_A_COLUMN = {  # a pseudonym read down a column, a few digits a row, each row's label between the parts
    "csv, one digit a row": ("rows.csv", ("row,v\n" + "".join(f"r{i},{c}\n" for i, c in enumerate(P))).encode()),
    "csv, four digits a row": ("rows.csv", ("region,code\n" + "".join(f"Region {i},{P[i:i + 4]}\n"
                                                                      for i in range(0, 32, 4))).encode()),
    "markdown table": ("rows.md", ("| r | v |\n|---|---|\n" + "".join(f"| r{i} | {P[i:i + 4]} |\n"
                                                                     for i in range(0, 32, 4))).encode()),
    "json records": ("rows.json", json.dumps([{"k": f"r{i}", "v": P[i:i + 4]} for i in range(0, 32, 4)]).encode()),
    "csv in utf-16 without a byte order mark": ("rows.csv", ("row,v\n" + "".join(f"r{i},{P[i:i + 4]}\n"
                                                             for i in range(0, 32, 4))).encode("utf-16-le")),
}


@pytest.mark.parametrize("attack", sorted(DOWN_A_COLUMN))
def test_a_pseudonym_written_down_a_column_is_blocked(attack: str) -> None:
    name, data = DOWN_A_COLUMN[attack]
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take_bytes(name, data, None, LIMITS_LONG, PSEUDONYMS)


LIMITS_LONG = OutputSettings(max_file_bytes=5000, max_csv_rows=100)


def _utf7_in_short_runs(text: str) -> bytes:
    """UTF-7 that shifts every character to base64 (as UTF-7 may), each run under 16 characters and ended by '.'."""
    return ".".join("+" + base64.b64encode(text[i:i + 3].encode("utf-16-be")).decode().rstrip("=") + "-"
                    for i in range(0, len(text), 3)).encode("ascii")


OTHER_ENCODINGS = {  # encodings a reader decodes with one call, that the search did not try
    "utf-7 in short shifted runs": ("rows.txt", _utf7_in_short_runs(P)),
    "a compressed png text chunk": ("plot.png", PNG_HEAD + _png_chunk(b"zTXt", b"Note\x00\x00" + zlib.compress(
        f"id={P}".encode())) + PNG_END),
}


@pytest.mark.parametrize("attack", sorted(OTHER_ENCODINGS))
def test_a_pseudonym_in_other_encodings_is_blocked(attack: str) -> None:
    name, data = OTHER_ENCODINGS[attack]
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take_bytes(name, data, None, LIMITS, PSEUDONYMS)


def test_a_pseudonym_in_the_sidecar_is_blocked_too() -> None:
    data = b"region,F\nNorth,40\n"
    sidecar = json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "record": {"query": {"description": P}}})
    with pytest.raises(ValidationError, match="pseudonyms"):
        files.take_bytes("t.csv", data, sidecar.encode(), LIMITS, PSEUDONYMS)
    escaped = '{"record": {}, "source": "' + "".join(f"\\u{ord(c):04x}" for c in P) + '"}'  # as json.loads reads it
    with pytest.raises(ValidationError, match="pseudonyms"):
        files.take_bytes("t.csv", data, escaped.encode(), LIMITS, PSEUDONYMS)
    with pytest.raises(ValidationError, match="not one that save_output writes"):
        files.take_bytes("t.csv", data, b"[]", LIMITS, PSEUDONYMS)
    taken = files.take_bytes("t.csv", data, json.dumps({"sha256": "x", "record": {}}).encode(), LIMITS, PSEUDONYMS)
    assert taken.sdc_record is not None and taken.sdc_record["sidecar_sha256_matches"] is False


IN_A_NOTEBOOK = """
import json, sys
from pathlib import Path
from IPython.core.interactiveshell import InteractiveShell
import pandas as pd
import disclosure_control as dc
from notebooks_template import outputs_helper
folder = Path(sys.argv[1])
frame = pd.DataFrame({"region": ["North"] * 12 + ["South"] * 15, "sex": ["F"] * 27})
out = dc.crosstab("region", "sex", data=frame, dataset="patients")
outputs_helper.save_output(out, "plain", outputs_dir=folder)  # not in a cell: no source
shell = InteractiveShell.instance()
shell.user_ns.update(out=out, save_output=outputs_helper.save_output, folder=folder)
result = shell.run_cell("save_output(out, 'from_cell', outputs_dir=folder)  # by region", store_history=True)
result.raise_error()
"""


def test_save_output_records_the_notebook_cell_that_made_the_table(tmp_path: Path) -> None:
    """Run in the workspace's own Python (it has IPython; the gateway's has not): inside a cell the sidecar
    carries the cell's source, for the checker's code view; outside a notebook it carries none."""
    import os
    import subprocess

    python = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser")) / "bin" / "python"
    if not python.exists():
        pytest.skip("the workspace environment is not built here")
    repo = Path(__file__).resolve().parents[3]
    subprocess.run([str(python), "-c", IN_A_NOTEBOOK, str(tmp_path)], check=True, cwd=repo, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(repo), "HOME": str(tmp_path)})
    assert "source" not in json.loads((tmp_path / "plain.sdc.json").read_text())
    saved = json.loads((tmp_path / "from_cell.sdc.json").read_text())
    assert saved["source"] == "save_output(out, 'from_cell', outputs_dir=folder)  # by region"


def test_a_request_can_be_returned_early_but_only_while_it_awaits_review() -> None:
    """Early return (issue 14): from submitted or partially reviewed, besides the decision's return."""
    from gateway.outputs.workflow import EARLY_RETURN_STATES

    assert {OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED} == EARLY_RETURN_STATES
    for state in (OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED, OutputState.REVIEWED):
        check_output_move(state, OutputState.RETURNED)
    for state in (OutputState.PENDING, OutputState.APPROVED, OutputState.RELEASED, OutputState.RETURNED):
        with pytest.raises(InvalidTransition):
            check_output_move(state, OutputState.RETURNED)


# --- images carry no more than they draw ------------------------------------------------------------------------

IMAGE_LIMITS = OutputSettings(max_file_bytes=5_000_000, max_csv_rows=10_000)
ROWS = "nhs_number,region,n\n" + "".join(f"{9000000000 + i},North,{i % 7}\n" for i in range(20_000))
SMALL = "region,n\n" + "".join(f"R{i},{i % 5}\n" for i in range(40))
SVG_OPEN = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">'
CHART = ('<?xml version="1.0" encoding="utf-8" standalone="no"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
         '  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'  # as matplotlib writes it
         + SVG_OPEN + '<metadata><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description>'
         'made with matplotlib 3.9</rdf:Description></rdf:RDF></metadata><!-- Created with matplotlib -->'
         '<title>Admissions</title><path d="M 0 0 \nL 5 5 \nL 9 2" style="stroke: #000"/><text x="1" y="9">North</text>'
         '<text x="5" y="9">South</text><image width="2" height="2" xlink:href="data:image/png;base64,'
         + base64.b64encode(minimal_png()).decode() + '"/></svg>')


def _svg(body: str) -> bytes:
    return (SVG_OPEN + body + "</svg>").encode()


HIDING_IMAGES = {  # each was taken at intake, and released as it came (the checker's page shows only the picture)
    "a table in a png text chunk": ("plot.png", PNG_HEAD + _png_chunk(b"tEXt", b"Data\x00" + ROWS.encode()) + PNG_END,
                                    "characters of text metadata"),
    "a small table in a png text chunk": ("plot.png", PNG_HEAD + _png_chunk(b"tEXt", b"Data\x00" + SMALL.encode())
                                          + PNG_END, "holds a table"),
    "a table compressed in a png text chunk": ("plot.png", PNG_HEAD + _png_chunk(
        b"zTXt", b"Data\x00\x00" + zlib.compress(ROWS.encode())) + PNG_END, "characters of text metadata"),
    "a table after the png's end": ("plot.png", minimal_png() + ROWS.encode(), "after the image's end"),
    "a private png chunk": ("plot.png", PNG_HEAD + _png_chunk(b"prVt", zlib.compress(ROWS.encode())) + PNG_END,
                            "a chunk of a kind"),
    "a png without its end": ("plot.png", PNG_HEAD, "ends before"),
    "a png that is not one": ("plot.png", b"GIF89a" + ROWS.encode(), "not a PNG"),
    "a table in an svg foreignObject": ("plot.svg", _svg(
        '<foreignObject width="10" height="10"><table xmlns="http://www.w3.org/1999/xhtml">'
        + "".join(f"<tr><td>{line}</td></tr>" for line in ROWS.splitlines()) + "</table></foreignObject>"),
        "<foreignObject>"),
    "rows of hidden svg text": ("plot.svg", _svg("".join(
        f'<text style="display:none">{line}</text>\n' for line in ROWS.splitlines())), "rows"),
    "a table in an svg comment": ("plot.svg", _svg(f"<!--\n{SMALL}-->"), "holds a table"),
    "a table in svg metadata": ("plot.svg", _svg(f"<metadata>{SMALL}</metadata>"), "holds a table"),
    "a long svg description": ("plot.svg", _svg(f"<desc>{'x' * 5000}</desc>"), "not drawn"),
    "an svg entity": ("plot.svg", b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY r "North,40">]>'
                      + _svg("<text>&r;</text>"), "DOCTYPE has declarations"),
    "data in an svg stylesheet": ("plot.svg", _svg(f"<style>/* {'QUJD' * 1000} */</style>"), "not drawn"),
    "data in an svg attribute": ("plot.svg", _svg(f'<g id="{"QUJD" * 200}"/>'), "attributes"),
    "an svg script": ("plot.svg", _svg("<script>var rows = 1;</script>"), "<script>"),
    "an html element in an svg": ("plot.svg", _svg('<p xmlns="http://www.w3.org/1999/xhtml">North,40</p>'),
                                  "not SVG"),
    "a linked picture in an svg": ("plot.svg", _svg('<image xlink:href="https://example.org/x.png"/>'),
                                   "not one embedded PNG"),
    "a table after an embedded png's end": ("plot.svg", _svg(
        '<image xlink:href="data:image/png;base64,' + base64.b64encode(minimal_png() + ROWS.encode()).decode()
        + '"/>'), "after the image's end"),
    "an identifier column in svg text": ("plot.svg", _svg("".join(
        f"<text>{line}</text>\n" for line in ROWS.splitlines()[:30])), "named like a patient identifier"),
    "not an svg": ("plot.svg", b"<html><body>North,40</body></html>", "not an SVG drawing"),
}

GRAY_1X1 = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # one grey pixel: a row of a filter byte and a byte
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(*chunks: bytes) -> bytes:
    return SIGNATURE + b"".join(chunks)


HIDING_IMAGES.update({  # the attack on the image rule as it first landed: only the chunks' kinds were read
    "a table in the png header": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1 + ROWS.encode()), _png_chunk(
        b"IDAT", zlib.compress(b"\0\0")), _png_chunk(b"IEND", b"")), "not the size"),
    "a table as the png's end": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(
        b"IDAT", zlib.compress(b"\0\0")), _png_chunk(b"IEND", ROWS.encode())), "not the size"),
    "a table as a png palette": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(b"PLTE", SMALL.encode()),
                                                  _png_chunk(b"IDAT", zlib.compress(b"\0\0")),
                                                  _png_chunk(b"IEND", b"")), "palette"),
    "a table compressed as png gamma": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(
        b"gAMA", zlib.compress(ROWS.encode())), _png_chunk(b"IDAT", zlib.compress(b"\0\0")),
        _png_chunk(b"IEND", b"")), "not the size"),
    "a table after the pixel stream": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(
        b"IDAT", zlib.compress(b"\0\0") + zlib.compress(ROWS.encode())), _png_chunk(b"IEND", b"")),
        "more than its compressed stream"),
    "a table as extra pixel rows": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(
        b"IDAT", zlib.compress(b"\0\0" + ROWS.encode())), _png_chunk(b"IEND", b"")), "pixel data"),
    "a table after compressed png text": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(
        b"zTXt", b"Note\0\0" + zlib.compress(b"made by R") + zlib.compress(ROWS.encode())),
        _png_chunk(b"IDAT", zlib.compress(b"\0\0")), _png_chunk(b"IEND", b"")), "more than its compressed stream"),
    "a damaged png chunk": ("plot.png", PNG_HEAD + _png_chunk(b"tEXt", b"Note\0x")[:-4] + b"XXXX" + PNG_END,
                            "checksum"),
    "two png headers": ("plot.png", _png(_png_chunk(b"IHDR", GRAY_1X1), _png_chunk(b"IHDR", GRAY_1X1), _png_chunk(
        b"IDAT", zlib.compress(b"\0\0")), _png_chunk(b"IEND", b"")), "more than one IHDR"),
})

ONE_PNG = base64.b64encode(minimal_png()).decode()
HIDING_IMAGES.update({  # the attack on the SVG rule as it first landed
    "a processing instruction in an svg": ("plot.svg", b"<?data " + ROWS.encode() + b"?>" + _svg("<rect/>"),
                                          "processing instruction"),
    "a processing instruction inside an svg": ("plot.svg", _svg(f"<?data {ROWS}?><rect/>"), "processing instruction"),
    "a notation in an svg doctype": ("plot.svg", b'<!DOCTYPE svg [<!NOTATION n SYSTEM "' + ROWS[:400].encode()
                                     + b'">]>' + _svg("<rect/>"), "DOCTYPE has declarations"),
    "a table in a style attribute": ("plot.svg", _svg(f'<rect style="fill: red; /* {ROWS} */"/>'), "style attribute"),
    "a table in a path": ("plot.svg", _svg(f'<path d="M 0 0 L {ROWS}"/>'), "d attribute"),
    "a table in a view box": ("plot.svg", _svg(f'<svg viewBox="{ROWS[:90]}"/>'), "viewBox attribute"),
    "a table in a transform": ("plot.svg", _svg(f'<g transform="{ROWS}"/>'), "transform attribute"),
    "a table behind a link": ("plot.svg", _svg(f'<a href="data:text/csv,{ROWS[:300]}"><rect/></a>'),
                              "links to something outside"),
    "a second link on a picture": ("plot.svg", _svg(
        f'<image href="data:image/png;base64,{ONE_PNG}" xlink:href="data:text/csv;base64,'
        + base64.b64encode(ROWS.encode()).decode() + '"/>'), "not one embedded PNG"),
    "a table in a utf-16 comment": ("plot.svg", ('<?xml version="1.0" encoding="UTF-16"?>'
                                                 + _svg(f"<!--{ROWS}-->").decode()).encode("utf-16-le"),
                                    "not drawn"),
})


@pytest.mark.parametrize("attack", sorted(HIDING_IMAGES))
def test_an_image_carries_no_more_than_it_draws(attack: str) -> None:
    name, data, message = HIDING_IMAGES[attack]
    with pytest.raises(ValidationError, match=re.escape(message)):
        files.take_bytes(name, data, None, IMAGE_LIMITS, PSEUDONYMS)


def test_plain_charts_are_taken() -> None:
    matplotlib_png = PNG_HEAD + _png_chunk(b"tEXt", b"Software\x00Matplotlib version3.9.2, https://matplotlib.org/") \
        + _png_chunk(b"pHYs", struct.pack(">IIB", 3937, 3937, 1)) + PNG_END
    assert files.take_bytes("plot.png", matplotlib_png, None, IMAGE_LIMITS, PSEUDONYMS).content_type == "image/png"
    assert files.take_bytes("chart.svg", CHART.encode(), None, IMAGE_LIMITS, PSEUDONYMS).path == "chart.svg"


def test_the_text_an_svg_draws_is_checked_like_a_table() -> None:
    """Styling can hide drawn text from the checker's view: its tables get the heuristic checks of a text file."""
    drawn = _svg("".join(f'<text font-size="0">{line}</text>\n' for line in SMALL.splitlines()))
    result = check_heuristic(drawn, "svg")
    assert result["method"] == "heuristic" and result["tables"] == 1
    assert "small count" in result["summary"] and "An image" in " ".join(result["notes"])
    assert check_heuristic(CHART.encode(), "svg")["method"] == "manual"  # labels, not a table


def _built_version(folder: Path, pseudonyms: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.table({"pseudo_id": pseudonyms, "age": [40] * len(pseudonyms)}), folder / "patients.parquet")
    (folder / "manifest.json").write_text(json.dumps({"tables": [{"file": "patients.parquet", "columns": [
        {"name": "pseudo_id"}, {"name": "age"}]}]}))


def test_pseudonyms_of_every_built_version_are_searched_for(tmp_path: Path) -> None:
    """A workspace keeps the extract version it started with, and a home keeps files made from earlier ones: a
    patient a rebuild dropped (a new opt-out, a narrower cohort) is still searched for, not only the live version's."""
    from types import SimpleNamespace

    from gateway.outputs.service import project_pseudonyms

    dropped, kept = "a1b2c3d4e5f60718293a4b5c6d7e8f90", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    project_dir = tmp_path / "sde-0001"
    _built_version(project_dir / "v1", [dropped, kept])
    _built_version(project_dir / "v2", [kept])
    (project_dir / "current").symlink_to("v2")
    matcher = project_pseudonyms(SimpleNamespace(extracts_root=tmp_path), SimpleNamespace(reference="SDE-0001"))
    assert matcher.count([f"id {kept}"]) and matcher.count([f"id {dropped}"])
