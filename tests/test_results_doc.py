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


def test_nested_choice_picks_each_test_fold_s_recipe_without_that_fold():
    """The k-fold targets' recipe chosen for each test fold k by the rounds whose test and selection folds
    both differ from k: a recipe that leads on the pooled selection folds only through the rounds that see
    fold k is not chosen for fold k; rows tied there share it; rows on other folds cannot be compared."""
    mod = _results_module()

    def row(vals, accs, subjects="abcd"):
        return {"per_fold": [{"fold": k, "val_fold": (k + 1) % 4, "test_subjects": [subjects[k]],
                              "val_accuracy": v, "accuracy": a} for k, (v, a) in enumerate(zip(vals, accs))]}

    # recipe A leads overall on the pooled selection folds only by round 3 (which selects on fold 0)
    a = row([0.90, 0.90, 0.90, 1.00], [0.5, 0.6, 0.7, 0.8])
    b = row([0.91, 0.91, 0.91, 0.80], [0.9, 0.9, 0.9, 0.9])
    pool = [(a, (0.925, True)), (b, (0.8825, True))]
    n = mod.nested_choice(pool)
    # fold 0 (rounds 0 and 3 left out): B (0.91 > 0.90), 0.9; fold 1 (rounds 1, 0 out): rounds 2, 3: A 0.95 > B
    # 0.855, 0.6; fold 2 (rounds 2, 1 out): rounds 0, 3: A, 0.7; fold 3 (rounds 3, 2 out): rounds 0, 1: B, 0.9
    assert abs(n["mean"] - (0.9 + 0.6 + 0.7 + 0.9) / 4) < 1e-12 and n["folds"] == 4
    assert n["same"] == 2 and n["ties"] == 0  # A, the pooled choice, alone on folds 1 and 2
    # a tie on fold 0's rounds (1 and 2): the two rows share fold 0, each accuracy half
    c = row([0.91, 0.91, 0.91, 0.80], [0.5, 0.9, 0.9, 0.9])
    tied = mod.nested_choice([(b, (0.8825, True)), (c, (0.8825, True))])
    assert tied["ties"] == 4 and abs(tied["mean"] - ((0.9 + 0.5) / 2 + 0.9 * 3) / 4) < 1e-12
    # the selection rule breaks a tie first (accuracy then loss over accuracy alone)
    assert mod.nested_choice([(b, (0.8825, False)), (c, (0.8825, True))])["mean"] == (0.5 + 0.9 * 3) / 4
    # folds of other subjects, or a round without a selection accuracy: no nested figure
    assert mod.nested_choice([(a, (0.9, True)), (row([0.9] * 4, [0.5] * 4, "abdc"), (0.9, True))]) is None
    none = row([0.9, None, 0.9, 0.9], [0.5] * 4)
    assert mod.nested_choice([(none, (0.9, True))]) is None and mod.nested_choice([]) is None
    two = {"per_fold": [{"fold": k, "val_fold": 1 - k, "test_subjects": [k], "val_accuracy": 0.9, "accuracy": 0.8}
                        for k in (0, 1)]}
    assert mod.nested_choice([(two, (0.9, True))]) is None  # (two folds: no round left to choose on)
    # a row chosen by accuracy then loss wins a tie of accuracy over one chosen by accuracy alone, whichever first
    assert mod.nested_choice([(c, (0.8825, True)), (b, (0.8825, False))])["mean"] == (0.5 + 0.9 * 3) / 4
    # docs/results.md judges the k-fold targets by it too
    text = DOC.read_text()
    ck = next(ln for ln in text.splitlines() if ln.startswith("| CK+48 >= "))
    assert "chosen nested: " in ck and ck.rstrip(" |").endswith("(see below)")
