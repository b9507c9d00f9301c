"""Every crash, traceback or silent acceptance the corpus found, kept as a fixed case run every time.

``regressions.json`` holds each case in full (family, category, expectation and spec), so that a
later change to the generator cannot change what these cases are; ``fixed`` says what was wrong and
where it was fixed.  Add a case with ``python -m tests.fuzz.regressions add ID [ID ...] --fixed TEXT``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.fuzz.generate import Case, case_from_id

PATH = Path(__file__).with_name("regressions.json")


def entries() -> list:
    return json.loads(PATH.read_text()) if PATH.exists() else []


def regression_cases() -> list:
    """The regression cases, ids prefixed ``reg:`` so that a report tells them apart."""
    cases = []
    for entry in entries():
        case = Case.from_json(entry["case"])
        case.id = f"reg:{case.id}"
        cases.append(case)
    return cases


def add(ids, fixed: str) -> None:
    known = {e["case"]["id"] for e in entries()}
    data = entries()
    for case_id in ids:
        if case_id not in known:
            data.append({"fixed": fixed, "case": case_from_id(case_id).to_json()})
    PATH.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "add" and "--fixed" in sys.argv:
        i = sys.argv.index("--fixed")
        add(sys.argv[2:i], " ".join(sys.argv[i + 1:]))
    else:
        print(__doc__)
