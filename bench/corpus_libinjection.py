"""Detection and false-positive rates of bastion.detect.sqli / .xss on libinjection's sample data.

Usage: .venv/bin/python bench/corpus_libinjection.py [--corpus ../shared/corpora/libinjection] [--misses N]

Each data line is URL-decoded once (as libinjection's own harness does) and passed to the checker.
Prints, per file, how many lines the checker flags, then totals: SQLi detection on sqli-*.txt, XSS
detection on xss-*.txt (+ the shazzer fuzz list in extra/), false positives on false_positives.txt,
and on the labelled unit vectors tests/test-sqli-*.txt. Also the median time per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import unquote_plus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bastion.detect.sqli import sqli_check  # noqa: E402
from bastion.detect.xss import xss_check  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "corpora" / "libinjection"


def read_lines(path: Path) -> list[str]:
    out = []
    for raw in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        # libinjection's reader leaves a %XX in the last two characters undecoded
        out.append(unquote_plus(line, errors="surrogateescape"))
    return out


def run(check, lines: list[str]) -> tuple[int, list[str]]:
    hits = 0
    misses = []
    for line in lines:
        if check(line) is not None:
            hits += 1
        else:
            misses.append(line)
    return hits, misses


def either(v: str) -> object | None:
    return sqli_check(v) or xss_check(v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=DEFAULT)
    ap.add_argument("--misses", type=int, default=0, help="print up to N missed lines per class")
    a = ap.parse_args()
    data = a.corpus / "data"
    totals: dict[str, list[int]] = {}
    missed: dict[str, list[str]] = {}

    def tally(label: str, check, files: list[Path]) -> None:
        for f in files:
            lines = read_lines(f)
            hits, misses = run(check, lines)
            print(f"  {f.name:48s} {hits:6d}/{len(lines):<6d} {100 * hits / max(1, len(lines)):6.1f}%")
            t = totals.setdefault(label, [0, 0])
            t[0] += hits
            t[1] += len(lines)
            missed.setdefault(label, []).extend(misses)

    print("SQLi samples (sqli_check):")
    tally("sqli", sqli_check, sorted(data.glob("sqli-*.txt")))
    print("XSS samples (xss_check):")
    tally("xss", xss_check, sorted(data.glob("xss-*.txt")))
    extra = sorted((a.corpus / "extra").glob("xss-*.txt"))
    if extra:
        print("XSS fuzz list (xss_check):")
        tally("xss-shazzer", xss_check, extra)
    print("False positives (either check flags the line):")
    fp_lines = read_lines(data / "false_positives.txt")
    fp_hits, _ = run(either, fp_lines)
    fp_flagged = [v for v in fp_lines if either(v) is not None]

    unit_pos = unit_neg = unit_pos_hit = unit_neg_hit = 0
    for f in sorted((a.corpus / "tests").glob("test-sqli-*.txt")):
        text = f.read_text(encoding="utf-8", errors="surrogateescape")
        inp = text.split("--INPUT--\n", 1)[1].split("\n--EXPECTED--", 1)[0]
        expected = text.split("--EXPECTED--\n", 1)[1].strip() if "--EXPECTED--\n" in text else ""
        hit = sqli_check(inp) is not None
        if expected:
            unit_pos += 1
            unit_pos_hit += hit
        else:
            unit_neg += 1
            unit_neg_hit += hit

    print()
    print("== totals ==")
    for label, (h, n) in totals.items():
        print(f"{label:12s} detected {h}/{n} = {100 * h / max(1, n):.2f}%")
    print(f"false_positives.txt flagged {fp_hits}/{len(fp_lines)} = {100 * fp_hits / max(1, len(fp_lines)):.2f}%")
    print(f"tests/test-sqli-*: attacks detected {unit_pos_hit}/{unit_pos}, benign flagged {unit_neg_hit}/{unit_neg}")

    # speed: median µs per call over a mixed sample, and over 1 KB of prose
    sample = read_lines(data / "sqli-misc.txt")[:200] + fp_lines[:200]
    prose = ("Please select your drop-off location; we'll union the orders (O'Brien's too) and drop you a note. " * 11)[
        :1024
    ]
    for name, vals in (("mixed sample", sample), ("1 KB prose", [prose] * 200)):
        for label, fn in (("sqli", sqli_check), ("xss", xss_check)):
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                for v in vals:
                    fn(v)
                runs.append((time.perf_counter() - t0) / len(vals) * 1e6)
            print(f"speed {label:4s} {name:13s}: median {statistics.median(runs):.1f} µs/value")

    if a.misses:
        for label, lines in missed.items():
            print(f"\n-- missed {label} (first {a.misses}) --")
            for line in lines[: a.misses]:
                print(repr(line[:200]))
        print("\n-- flagged false_positives.txt --")
        for line in fp_flagged:
            print(repr(line[:200]))


if __name__ == "__main__":
    main()
