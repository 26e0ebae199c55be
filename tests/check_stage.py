#!/usr/bin/env python3
"""Checks one stage of the test command (dev.sh test) after ctest ran it: that it ran exactly the
number of tests tests/stages.txt expects of it, and that none of them was skipped unless
tests/skips.txt lists it with its reason.

    check_stage.py STAGE JUNIT_XML

A test renamed out of a stage's selection, a test binary that lost a suite, or a test that quietly
skips itself fails the run here instead of passing unseen. When a test is added or removed on
purpose, the stage's count in tests/stages.txt changes with it, in the same commit.
"""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent


def table(path):
    """{first word: rest of the line} of a file of such lines; '#' starts a comment."""
    out = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, rest = line.partition(" ")
        if not rest.strip():
            sys.exit(f"{path.name}:{n}: '{key}' needs a value after it")
        out[key] = rest.strip()
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    stage, junit = sys.argv[1], Path(sys.argv[2])
    counts = table(HERE / "stages.txt")
    allowed = table(HERE / "skips.txt")
    if stage not in counts:
        sys.exit(f"check_stage: tests/stages.txt has no line for stage '{stage}'")
    cases = ET.parse(junit).getroot().iter("testcase")
    names, skipped = [], []
    for case in cases:
        names.append(case.get("name"))
        if case.find("skipped") is not None:
            skipped.append(case.get("name"))
    failed = False
    bad_skips = [n for n in skipped if n not in allowed]
    for n in bad_skips:
        print(f"check_stage: {stage}: {n} was skipped, and tests/skips.txt does not list it: "
              "a skip is a failure (see the test's output above for its reason)")
        failed = True
    for n in skipped:
        if n in allowed:
            print(f"check_stage: {stage}: {n} skipped, as tests/skips.txt allows: {allowed[n]}")
    want = int(counts[stage])
    if len(names) != want:
        print(f"check_stage: {stage}: ran {len(names)} tests, tests/stages.txt expects {want}. A test "
              "left or joined this stage (renamed out of its selection, a suite lost or added). If that "
              f"is meant, write '{stage} {len(names)}' in tests/stages.txt. The tests it ran:")
        for n in sorted(names):
            print(f"  {n}")
        failed = True
    if failed:
        return 1
    print(f"check_stage: {stage}: {len(names)} tests ran, as expected; {len(skipped)} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
