"""A time-bounded slice of the hostile-input corpus (tests/fuzz), and every regression case it found.

The slice is deterministic: the first cases of each family, which cover every mutation kind of the
family (see ``generate._table``), then every case of ``tests/fuzz/regressions.json``.  Each runs in
a worker subprocess (a crash by signal is caught and named) and must end in a clean error, a
correct result or an allowlisted leniency: zero tracebacks, crashes, hangs, silent acceptances,
wrong results, leftover files, memory or time overruns.  The whole corpus (5,100 cases) runs with
``python -m tests.fuzz.run_corpus``.
"""
from __future__ import annotations

from collections import Counter

from tests.fuzz.generate import make_case
from tests.fuzz.regressions import regression_cases
from tests.fuzz.run_corpus import BAD, run_cases, summary_table

SLICE = {"onnx": 300, "lowbit": 300, "run_input": 116, "cli": 154, "api": 120}
BUDGET_SECONDS = 150


def test_fuzz_slice_and_regressions():
    cases = [make_case(family, i) for family, n in SLICE.items() for i in range(n)] + regression_cases()
    results = run_cases(cases, budget=BUDGET_SECONDS)
    table = summary_table(results)
    print(table)
    families = Counter(r["family"] for r in results)
    assert set(families) == set(SLICE), f"families not reached within the budget:\n{table}"
    bad = [r for r in results if r["outcome"] in BAD]
    listed = "\n".join(f"{r['outcome']} {r['id']} {r['category']}: {r['detail'][:200]}" for r in bad[:20])
    assert not bad, f"{len(bad)} bad outcomes:\n{listed}\n{table}"
    assert len(results) >= 0.9 * len(cases), f"only {len(results)} of {len(cases)} cases ran in the budget\n{table}"
