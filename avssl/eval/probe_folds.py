"""The folds of the linear-probe protocol (:mod:`avssl.eval.probe`): outer folds (official folds
left out one at a time, a stratified group k-fold, a fixed train/test split) and the inner
splits of one outer training set that choose ``C``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from avssl.errors import AvsslError

INNER_SPLITS = 3


def array(x) -> np.ndarray:
    """``x`` (a list, an array or a tensor) as a numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@dataclass
class Fold:
    """One outer split: ``train`` and ``test`` are index arrays into the clips."""

    name: str
    train: np.ndarray
    test: np.ndarray


def leave_one_group_out(groups: np.ndarray) -> list[Fold]:
    """One fold per distinct group (official folds), tested on that group alone.

    Raises:
        AvsslError: fewer than two groups.
    """
    groups = array(groups)
    names = sorted(set(groups.tolist()), key=_natural)  # numbers too: fold 10 after fold 9
    if len(names) < 2:
        raise AvsslError(f"leave-one-fold-out needs at least two folds, found {names}")
    idx = np.arange(len(groups))
    return [Fold(str(g), idx[groups != g], idx[groups == g]) for g in names]


def fixed_split(groups: np.ndarray, train: str = "train", test: str = "test") -> list[Fold]:
    """One predefined fold: fit on the clips of group ``train``, test on those of ``test``.

    Clips of any other group (e.g. a validation split) are in neither set.

    Args:
        groups: ``[C]`` each clip's group (e.g. its split).
        train: the group fitted on.
        test: the group tested on (also the fold's name).

    Raises:
        AvsslError: either side is empty.
    """
    groups = array(groups)
    idx = np.arange(len(groups))
    fold = Fold(test, idx[groups == train], idx[groups == test])
    for name, part in ((train, fold.train), (test, fold.test)):
        if not len(part):
            raise AvsslError(f"no clip in split {name!r} (found {sorted(set(groups.tolist()))})")
    return [fold]


def group_kfold(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int = 0, flag: str = "n_splits"
) -> list[Fold]:
    """Stratified k-fold in which no group straddles two folds (``StratifiedGroupKFold``).

    Args:
        y: ``[C]`` labels (stratified on; a class may have fewer clips than folds).
        groups: ``[C]`` recording ids, each kept within one fold.
        n_splits: number of folds (at least 2).
        seed: shuffling seed.
        flag: what sets ``n_splits``, for the error message (e.g. ``--folds``).

    Returns:
        ``n_splits`` folds named ``"1"`` .. ``str(n_splits)``.

    Raises:
        AvsslError: fewer groups than folds or every class has fewer clips than folds.
    """
    if n_splits < 2:
        raise AvsslError(f"{flag} {n_splits}: a k-fold split needs at least 2 folds")
    y, groups = array(y), array(groups)
    n_groups = len(set(groups.tolist()))
    labels, counts = np.unique(y, return_counts=True)
    most = min(n_groups, int(counts.max(initial=0)))  # the most folds that can be made
    if most < n_splits:
        top = str(labels[counts.argmax()])
        why = f"every class has fewer than {n_splits} clips (the largest, {top!r}, has {most})"
        if n_groups < n_splits:
            why = f"{n_groups} groups (recordings), fewer than {n_splits} folds"
        fix = f"use {flag} {most} or fewer" if most >= 2 else "too few to cross-validate"
        raise AvsslError(f"{flag} {n_splits}: {why}; {fix}")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class" is reported per fold instead
        warnings.simplefilter("ignore", UserWarning)
        splits = list(cv.split(np.zeros(len(y)), y, groups))
    return [Fold(str(i + 1), tr, te) for i, (tr, te) in enumerate(splits)]


def inner_splits(
    y: np.ndarray, groups: np.ndarray, predefined: bool, seed: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]] | None, str]:
    """Cross-validation splits of one outer *training* set, for choosing ``C``.

    Args:
        y: ``[M]`` labels of the training clips only.
        groups: ``[M]`` their groups (official folds when ``predefined``, else recordings).
        predefined: leave one training fold out; otherwise stratified group 3-fold.
        seed: shuffling seed of the group k-fold.

    Returns:
        ``(splits, description)``: index pairs into the training set, or ``None`` and the reason
        no valid inner CV exists (then a fixed ``C`` is used).
    """
    n_groups = len(set(groups.tolist()))
    if predefined:
        if n_groups < 2:
            return None, "one training fold"
        splits = [(f.train, f.test) for f in leave_one_group_out(groups)]
        kind = f"leave-one-fold-out over {n_groups} training folds"
    else:
        k = min(INNER_SPLITS, n_groups)
        labels, counts = np.unique(y, return_counts=True)
        if k < 2:
            return None, "one training group"
        if counts.min() < k:
            rare = str(labels[counts.argmin()])
            return None, f"class {rare!r} has {counts.min()} training clips (< {k} inner splits)"
        splits = [(f.train, f.test) for f in group_kfold(y, groups, k, seed)]
        kind = f"stratified group {k}-fold"
    for tr, va in splits:  # StratifiedGroupKFold can leave a fold empty
        if len(np.unique(y[tr])) < 2 or not len(va):
            return None, "an inner split is empty or has a single training class"
    return splits, kind


def _natural(name):
    """Sort key of a group name: numbers (``3``, ``"10"``) in numeric order, then the rest."""
    name = str(name)
    return (0, int(name), "") if name.isdigit() else (1, 0, name)
