"""Linear-probe protocol: a linear classifier on frozen clip features, fold by fold.

As L3-Net (https://arxiv.org/abs/1705.08168) and its successors evaluate learnt audio features:
outer folds are the dataset's official folds (leave one fold out), a stratified group k-fold, or
one fixed train/test split (e.g. training speakers -> unseen test speakers);
inside each outer training set the regularisation ``C`` is chosen by cross-validation over the
training folds only (the test fold never reaches :class:`~sklearn.model_selection.GridSearchCV`),
then the classifier is refit on the whole training set and scored on the test fold.
Degenerate folds (tiny or unbalanced datasets) fall back to a fixed ``C`` or a constant
prediction, and the per-fold record says so.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from avssl.errors import AvsslError
from avssl.eval.probe_folds import (
    Fold,
    array,
    fixed_split,
    group_kfold,
    inner_splits,
    leave_one_group_out,
)

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
FIXED_C = 1.0
CLASSIFIERS = ("logreg", "svm")

__all__ = [
    "Fold", "evaluate_fold", "fixed_split", "group_kfold", "inner_splits", "leave_one_group_out",
    "linear_probe", "make_classifier", "standardize_by_group",
]  # fmt: skip


def _clip_arrays(x, y, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` ``[C, D]``, ``y`` ``[C]`` and ``groups`` ``[C]`` as arrays, or a ValueError: with
    more feature rows than labels the probe read the first rows alone, without a word."""
    x, y, groups = array(x), array(y), array(groups)
    if x.ndim != 2:
        raise ValueError(f"x must be [C, D] clip features, got shape {list(x.shape)}")
    if y.shape != (len(x),) or groups.shape != (len(x),):
        raise ValueError(
            f"y and groups must be [C] for the {len(x)} rows of x, got shapes "
            f"{list(y.shape)} and {list(groups.shape)}"
        )
    return x, y, groups


def standardize_by_group(x: np.ndarray, groups: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Standardise each group's features by that group's own mean and standard deviation.

    Per-domain statistics, as AdaBN (https://arxiv.org/abs/1603.04779) re-estimates batch-norm
    statistics per domain and speech front ends normalise mean and variance per speaker: with
    speakers as groups it takes out each voice's offset and scale, and reads no label. It is
    transductive: a test voice is normalised with statistics of its own (unlabelled) test clips.

    Args:
        x: ``[C, D]`` clip features.
        groups: ``[C]`` group names (e.g. speakers).
        eps: added to each standard deviation.

    Returns:
        ``[C, D]`` float64, each group with zero mean and (about) unit variance per dimension
        (a group of one clip becomes zeros: groups should hold many clips, e.g. a speaker's).

    Raises:
        ValueError: ``x`` is not 2-D or ``groups`` not one name per row of ``x``.
    """
    x, _, groups = _clip_arrays(x, np.zeros(len(array(x))), groups)
    out = np.empty(x.shape, dtype=np.float64)
    for g in np.unique(groups):
        part = x[groups == g].astype(np.float64)
        out[groups == g] = (part - part.mean(0)) / (part.std(0) + eps)
    return out


def make_classifier(kind: str, c: float = FIXED_C, seed: int = 0) -> Pipeline:
    """``StandardScaler`` then logistic regression (``logreg``) or a linear SVM (``svm``).

    Args:
        kind: ``logreg`` or ``svm``.
        c: inverse regularisation strength ``C``.
        seed: random state of the SVM.

    Raises:
        AvsslError: an unknown ``kind``.
    """
    if kind == "logreg":
        clf = LogisticRegression(C=c, max_iter=2000)
    elif kind == "svm":
        clf = LinearSVC(C=c, max_iter=20000, random_state=seed)
    else:
        raise AvsslError(f"unknown classifier {kind!r} (valid: {', '.join(CLASSIFIERS)})")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def evaluate_fold(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fold: Fold,
    predefined: bool,
    classifier: str = "logreg",
    seed: int = 0,
) -> dict:
    """Fit on ``fold.train`` (``C`` by inner CV), score on ``fold.test``.

    Args:
        x: ``[C, D]`` clip features.
        y: ``[C]`` labels.
        groups: ``[C]`` official folds or recording ids.
        fold: the outer split.
        predefined: whether ``groups`` are official folds (see :func:`inner_splits`).
        classifier: ``logreg`` or ``svm``.
        seed: seed of the inner group k-fold and the SVM.

    Returns:
        The per-fold record: ``fold``, ``n_train``, ``n_test``, ``accuracy``, ``C``,
        ``c_selection`` and, when they apply, ``unseen_test_classes``, ``fallback`` and
        ``warnings``.

    Raises:
        ValueError: ``x`` is not 2-D, or ``y`` or ``groups`` not one entry per row of ``x``.
    """
    x, y, groups = _clip_arrays(x, y, groups)
    xtr, ytr, xte, yte = x[fold.train], y[fold.train], x[fold.test], y[fold.test]
    rec: dict = {"fold": fold.name, "n_train": len(ytr), "n_test": len(yte)}
    unseen = sorted(set(yte.tolist()) - set(ytr.tolist()))
    if unseen:
        rec["unseen_test_classes"] = unseen  # always counted as errors
    train_classes = np.unique(ytr)
    if len(train_classes) < 2:
        rec.update(C=None, c_selection="none", fallback="one class in training: constant guess")
        pred = np.full(len(yte), train_classes[0] if len(train_classes) else -1)
        rec["accuracy"] = float(np.mean(pred == yte))
        return rec
    splits, how = inner_splits(ytr, groups[fold.train], predefined, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if splits is None:
            model = make_classifier(classifier, FIXED_C, seed).fit(xtr, ytr)
            rec.update(C=FIXED_C, c_selection=f"fixed (no inner CV: {how})")
        else:
            search = GridSearchCV(
                make_classifier(classifier, FIXED_C, seed), {"clf__C": list(C_GRID)}, cv=splits,
                scoring="accuracy", n_jobs=1,
            )  # fmt: skip
            search.fit(xtr, ytr)
            model = search.best_estimator_
            rec.update(C=float(search.best_params_["clf__C"]), c_selection=how)
    msgs = sorted({type(w.message).__name__ for w in caught})
    if msgs:
        rec["warnings"] = msgs
    rec["accuracy"] = float(np.mean(model.predict(xte) == yte))
    return rec


def linear_probe(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list[Fold],
    predefined: bool,
    classifier: str = "logreg",
    seed: int = 0,
) -> dict:
    """Every outer fold of :func:`evaluate_fold` and their summary.

    Args:
        x: ``[C, D]`` clip features.
        y: ``[C]`` labels.
        groups: ``[C]`` official folds or recording ids (for the inner CV).
        folds: the outer splits; those without test clips are skipped.
        predefined: whether ``groups`` are official folds (see :func:`inner_splits`).
        classifier: ``logreg`` or ``svm``.
        seed: seed of the inner group k-fold and the SVM.

    Returns:
        ``accuracy_mean`` / ``accuracy_std`` over folds with test clips, ``accuracy_pooled``
        (all test clips together: fairer when folds are very unequal), ``per_fold``.

    Raises:
        AvsslError: no fold has test clips.
        ValueError: ``x`` is not 2-D, or ``y`` or ``groups`` not one entry per row of ``x``
            (lists, arrays and tensors are accepted).
    """
    x, y, groups = _clip_arrays(x, y, groups)
    # Probe problems are small: threaded BLAS only adds hand-off latency to every L-BFGS step
    # (about 50x slower on a busy 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        per_fold = [evaluate_fold(x, y, groups, f, predefined, classifier, seed)
                    for f in folds if len(f.test)]  # fmt: skip
    if not per_fold:
        raise AvsslError("no fold has test clips")
    accs = np.array([r["accuracy"] for r in per_fold])
    n_test = np.array([r["n_test"] for r in per_fold])
    return {
        "accuracy_mean": float(accs.mean()),
        "accuracy_std": float(accs.std()),
        "accuracy_pooled": float((accs * n_test).sum() / n_test.sum()),
        "per_fold": per_fold,
    }
