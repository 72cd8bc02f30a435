"""Benchmark: the intake pseudonym search against the obvious baseline, on the same bytes.

An extract has about 20,000 pseudonyms and an output may be 5 MB. The gateway searches every handed-over file
for any of them, however dressed up (gateway/outputs/content.py: several decodings, folded, squashed and
reversed text, one Aho-Corasick automaton over every pseudonym's first and last 12 hex digits). The baseline is
what a first attempt would do: ``any(p in text for p in pseudonyms)`` over the plain lower-cased text only (it
finds far less). Both run on the same file, fastest of --repeat runs; the table prints the time of each and the
ratio, plus the automaton's build time (once per extract version, then cached).

    .venv/bin/python bench/content_checks.py                 # 20,000 pseudonyms, 1 MB and 5 MB CSVs
    .venv/bin/python bench/content_checks.py --pseudonyms 20000 --megabytes 1 --repeat 3
"""

from __future__ import annotations

import argparse
import secrets
import time

from gateway.outputs.content import PseudonymMatcher, search_texts


def csv_of(megabytes: float) -> bytes:
    rows = ["region,age_band,sex,count"]
    size, n = len(rows[0]), 0
    while size < megabytes * 2**20:
        row = f"E0900{n % 33:04d},{(n % 9) * 10}-{(n % 9) * 10 + 9},{'FM'[n % 2]},{(n * 37) % 997}"
        rows.append(row)
        size += len(row) + 1
        n += 1
    return ("\n".join(rows) + "\n").encode()


def fastest(repeat: int, job: object) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        job()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pseudonyms", type=int, default=20_000)
    parser.add_argument("--megabytes", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pseudonyms = [secrets.token_hex(16) for _ in range(args.pseudonyms)]
    started = time.perf_counter()
    matcher = PseudonymMatcher(pseudonyms)
    build = time.perf_counter() - started
    print(f"automaton over {args.pseudonyms:,} pseudonyms built in {build * 1000:.0f} ms (once per extract version)")
    print(f"{'file':>8} | {'intake search (s)':>17} | {'baseline any(p in text) (s)':>27} | {'ratio':>6}")
    for megabytes in args.megabytes:
        data = csv_of(megabytes)
        ours = fastest(args.repeat, lambda data=data: matcher.count(search_texts(data, "csv")))
        text = data.decode().lower()
        baseline = fastest(args.repeat, lambda text=text: any(p in text for p in pseudonyms))
        assert matcher.count(search_texts(data, "csv")) == 0  # nothing to find: the whole file is searched
        print(f"{megabytes:>6.1f}MB | {ours:>17.3f} | {baseline:>27.3f} | {ours / baseline:>6.2f}")


if __name__ == "__main__":
    main()
