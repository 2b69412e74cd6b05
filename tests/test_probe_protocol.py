"""Linear-probe protocol (:mod:`avssl.eval.probe`): grouped folds, the inner CV that picks C,
the probe against a brute-force refit, per-group standardisation and degenerate folds."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from avssl.eval import probe as probe_mod
from avssl.eval.probe import (
    Fold,
    evaluate_fold,
    fixed_split,
    group_kfold,
    inner_splits,
    leave_one_group_out,
    linear_probe,
    make_classifier,
    standardize_by_group,
)


def test_group_kfold_never_splits_a_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), rng.integers(1, 5, size=30))
    y = (groups % 3).astype(str)
    folds = group_kfold(y, groups.astype(str), 5, seed=1)
    assert len(folds) == 5
    seen = np.concatenate([f.test for f in folds])
    assert sorted(seen) == list(range(len(y)))  # a partition
    for f in folds:
        assert not set(groups[f.train]) & set(groups[f.test])
        assert set(y[f.test]) == {"0", "1", "2"}  # stratified


def test_leave_one_group_out():
    groups = np.array(["2", "10", "1", "2", "10"])
    folds = leave_one_group_out(groups)
    assert [f.name for f in folds] == ["1", "2", "10"]  # natural order
    for f in folds:
        assert set(groups[f.test]) == {f.name} and f.name not in set(groups[f.train])


# ---------------------------------------------------------------- probe protocol


def _blobs(n_per: int, groups_per_class: int, seed: int = 0, sep: float = 3.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b", "c"], n_per)
    x = rng.normal(size=(len(y), 5)) + sep * (np.unique(y, return_inverse=True)[1])[:, None]
    groups = np.array([f"{c}{i % groups_per_class}" for i, c in enumerate(y)])
    return x, y, groups


def test_inner_cv_never_sees_test_fold(monkeypatch):
    x, y, _ = _blobs(8, 4)
    x = np.c_[x, np.arange(len(y))]  # last column names the clip
    groups = np.array([str(i % 4) for i in range(len(y))])  # 4 "official folds"
    seen = []

    class Spy(probe_mod.GridSearchCV):
        def fit(self, X, y=None, **kw):
            seen.append((X[:, -1].astype(int), list(self.cv)))
            return super().fit(X, y, **kw)

    monkeypatch.setattr(probe_mod, "GridSearchCV", Spy)
    folds = leave_one_group_out(groups)
    res = linear_probe(x, y, groups, folds, predefined=True)
    assert len(seen) == 4 and res["accuracy_mean"] > 0.9
    for fold, (rows, cv) in zip(folds, seen, strict=True):
        assert sorted(rows) == sorted(fold.train) and not set(rows) & set(fold.test)
        assert len(cv) == 3  # leave one of the three training folds out
        for tr, va in cv:
            assert max(tr.max(), va.max()) < len(rows)  # indices into the training rows
            assert len(set(groups[rows[va]])) == 1 and not set(groups[rows[tr]]) & set(
                groups[rows[va]]
            )


def test_probe_matches_brute_force_refit():
    # C = the grid's best inner-CV C, refit on all training rows; fold accuracies summarised
    x, y, groups = _blobs(10, 5, seed=3, sep=0.7)  # overlapping classes: no fold is perfect
    grid = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)  # the documented grid, written out
    folds = group_kfold(y, groups, 3, seed=0)
    res = linear_probe(x, y, groups, folds, predefined=False)
    correct = total = 0
    not_fixed_c = []
    for f, rec in zip(folds, res["per_fold"], strict=True):
        # C chosen again by hand: mean validation accuracy over the inner splits for every C of
        # the grid, the first best in grid order (GridSearchCV's tie rule)
        splits, _ = inner_splits(y[f.train], groups[f.train], predefined=False)
        xtr, ytr = x[f.train], y[f.train]
        means = []
        for c in grid:
            accs = []
            for tr, va in splits:
                fit = make_classifier("logreg", c).fit(xtr[tr], ytr[tr])
                accs.append(np.mean(fit.predict(xtr[va]) == ytr[va]))
            means.append(np.mean(accs))
        assert rec["C"] == grid[int(np.argmax(means))]
        test_acc = {}  # every C refit on all training rows, scored on the test fold
        for c in grid:
            clf = make_classifier("logreg", c).fit(xtr, ytr)
            test_acc[c] = accuracy_score(y[f.test], clf.predict(x[f.test]))
        assert len(set(test_acc.values())) > 1  # the choice of C matters on this fold
        acc = test_acc[rec["C"]]
        assert rec["accuracy"] == pytest.approx(acc) and 0 < acc < 1
        not_fixed_c.append(test_acc[rec["C"]] != test_acc[probe_mod.FIXED_C])
        assert rec["c_selection"].startswith("stratified group")
        correct, total = correct + acc * len(f.test), total + len(f.test)
    assert any(not_fixed_c)  # a fold where a refit at the fixed C would score differently
    accs = [r["accuracy"] for r in res["per_fold"]]
    assert len(set(accs)) == len(accs)  # folds differ: the std is not 0 under any ddof
    mean = sum(accs) / len(accs)
    assert res["accuracy_mean"] == pytest.approx(mean)
    variance = sum((a - mean) ** 2 for a in accs) / len(accs)  # population (ddof 0)
    assert res["accuracy_std"] == pytest.approx(variance**0.5)
    assert res["accuracy_pooled"] == pytest.approx(correct / total)


def test_standardize_by_group_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype(np.float32) * [1, 2, 3, 4] + [5, 0, -5, 1]
    groups = np.array(["a", "b", "c"] * 10)
    out = standardize_by_group(x, groups)
    for i in range(len(x)):
        part = x[groups == groups[i]].astype(np.float64)
        want = (x[i] - part.mean(0)) / (part.std(0) + 1e-6)
        np.testing.assert_allclose(out[i], want, rtol=1e-9)


def test_source_norm_removes_a_voice_offset_from_the_probe():
    # two classes along dimension 0; the test "voice" is shifted by more than the class gap
    rng = np.random.default_rng(1)
    y = np.array(["a", "b"] * 40)
    x = rng.normal(scale=0.3, size=(80, 3)) + np.c_[(y == "b") * 2.0, np.zeros((80, 2))]
    split = np.array(["train"] * 60 + ["test"] * 20)
    voice = np.array([f"v{i % 3}" for i in range(60)] + ["new"] * 20)
    x[split == "test", 0] += 5.0
    folds = fixed_split(split)
    plain = linear_probe(x, y, voice, folds, predefined=False)["accuracy_pooled"]
    normed = standardize_by_group(x, voice)
    fixed = linear_probe(normed, y, voice, folds, predefined=False)["accuracy_pooled"]
    assert plain == 0.5 and fixed > 0.95


def test_degenerate_folds_are_reported_not_crashed():
    x, y, _ = _blobs(4, 1)
    # one training class: constant guess
    f = Fold("t", np.arange(0, 4), np.arange(4, 12))
    rec = evaluate_fold(x, y, np.zeros(len(y)).astype(str), f, predefined=True)
    assert rec["fallback"].startswith("one class") and rec["accuracy"] == 0.0
    assert rec["unseen_test_classes"] == ["b", "c"]
    # two classes but a single training fold: fixed C, the missing class counted wrong
    groups = np.array(["1"] * 8 + ["2"] * 4)
    f = Fold("2", np.arange(8), np.arange(8, 12))
    rec = evaluate_fold(x, y, groups, f, predefined=True)
    assert rec["C"] == probe_mod.FIXED_C and "one training fold" in rec["c_selection"]
    assert rec["accuracy"] == 0.0 and rec["unseen_test_classes"] == ["c"]
    # fewer clips of a class than inner splits
    splits, why = inner_splits(np.array(list("aaaabb")), np.array(list("012345")), False)
    assert splits is None and "'b' has 2 training clips" in why
