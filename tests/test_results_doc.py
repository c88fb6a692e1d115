"""docs/results.md is what benchmarks/results.py makes of the committed cards and summaries.

A summary added to docs/results/, a card re-measured or a row's rule changed without running
``benchmarks/results.py --write`` fails here. Latencies are the one thing the script measures
itself (on whatever machine runs it): they are stood in for, and the table's latency column and
the sentence that dates them are left out of the comparison.
"""

from __future__ import annotations

import difflib
import importlib.util
import re

from conftest import ROOT

DOC = ROOT / "docs" / "results.md"


def _results_module():
    spec = importlib.util.spec_from_file_location("ferkit_bench_results", ROOT / "benchmarks" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _without_latencies(text: str) -> list[str]:
    out = []
    for ln in text.splitlines():
        if "load average" in ln and "when measured" in ln:
            ln = "(the latency sentence)"
        elif ln.startswith("| "):
            cells = ln.split("|")
            if len(cells) == 9 and re.fullmatch(r" \d+\.\d+ ", cells[6]):  # | model | ... | CPU ms/face | notes |
                cells[6] = " (ms) "
            ln = "|".join(cells)
        out.append(ln)
    return out


def test_results_md_is_up_to_date(monkeypatch, tmp_path):
    results = _results_module()
    # as on CI and in a fresh checkout: the git-ignored run folders (runs/...) are not there, so every row
    # must come from what is committed (an evaluation's members_trained), not from this machine's runs/
    monkeypatch.setattr(results, "RUN_FOLDERS", tmp_path)
    monkeypatch.setattr(results, "latencies_ms", lambda archs, threads, reps, rounds=5: [1.0] * len(archs))
    made = _without_latencies(results.build(2, 2000))
    committed = _without_latencies(DOC.read_text())
    assert sum("(ms)" in ln for ln in committed) > 50  # the column was found (and stood in for)
    diff = "\n".join(difflib.unified_diff(committed, made, "docs/results.md", "benchmarks/results.py", lineterm="",
                                         n=0))
    assert made == committed, ("docs/results.md is stale: run `.venv/bin/python benchmarks/results.py --write`\n"
                               + diff[:4000])


def test_a_target_for_one_network_names_the_best_single_row_beside_an_ensemble():
    """FER2013's target is the best single network's: when the row chosen on the selection split is an
    ensemble, the summary also names the best row of one network (chosen the same way) and judges it."""
    mod = _results_module()
    ens = (0.72, "PublicTest", 0.7228, "72.28%", "ensemble: a + b")
    one = (0.7175, "PublicTest", 0.7286, "72.86%", "vgg_fer, tencrop TTA")
    text = "\n".join(mod.targets_summary({"fer2013": ens, "fer2013:single": one}))
    assert "| FER2013 >= 73.3% | 72.28% | ensemble: a + b |" in text
    assert ("Of the rows with one network, the highest on the selection split (71.75%, PublicTest) is vgg_fer, "
            "tencrop TTA: 72.86%, not met.") in text
    # the chosen row is one network already: nothing more to say
    assert "rows with one network" not in "\n".join(mod.targets_summary({"fer2013": one, "fer2013:single": one}))
    # a target stated for any model (FER+) gets no such sentence
    assert "rows with one network" not in "\n".join(mod.targets_summary({"ferplus": ens, "ferplus:single": one}))
