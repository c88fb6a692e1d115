from __future__ import annotations

import numpy as np
import pytest

from ferkit.engine.metrics import confusion_matrix, per_class, summarize


def test_confusion_and_scores_by_hand():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    pc = per_class(cm)
    assert pc["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert pc["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0, 0.0])
    res = summarize(cm, ["a", "b", "c", "d"])
    assert res["accuracy"] == pytest.approx(4 / 6) and res["n"] == 6
    f1 = [0.8, 0.5, 2 / 3]  # class d has no samples: left out of the macro average
    assert res["macro_f1"] == pytest.approx(np.mean(f1))
    assert res["per_class"]["c"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}


def test_length_mismatch():
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)
