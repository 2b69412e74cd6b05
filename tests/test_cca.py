"""The closed-form CCA of l3 retrieval against textbook solutions and scikit-learn's NIPALS CCA."""

import numpy as np
import pytest
import scipy.linalg
import torch

from avssl.eval.cca import cca_project, fit_cca


def _pairs(m: int, da: int, dv: int, shared: int = 3, seed: int = 0):
    """``m`` audio/visual pairs sharing ``shared`` latent factors of distinct strengths."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, shared, generator=g, dtype=torch.float64) * torch.tensor(
        [3.0, 1.5, 0.7][:shared], dtype=torch.float64
    )
    a = z @ torch.randn(shared, da, generator=g, dtype=torch.float64)
    v = z @ torch.randn(shared, dv, generator=g, dtype=torch.float64)
    a = a + torch.randn(m, da, generator=g, dtype=torch.float64) + 5.0  # an offset to centre
    v = v + torch.randn(m, dv, generator=g, dtype=torch.float64) * 2.0 - 1.0
    return a, v


def _reference_correlations(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hotelling's canonical correlations: the generalised eigenproblem
    ``Cav Cvv^-1 Cva x = rho^2 Caa x``, solved directly."""
    a, v = a - a.mean(0), v - v.mean(0)
    caa, cvv, cav = a.T @ a, v.T @ v, a.T @ v
    rho2 = scipy.linalg.eigh(cav @ np.linalg.solve(cvv, cav.T), caa, eigvals_only=True)
    return np.sqrt(np.clip(np.sort(rho2)[::-1], 0, 1))


def test_correlations_match_the_generalised_eigenproblem():
    a, v = _pairs(400, 8, 6)
    fitted = fit_cca(a, v, 6, ridge=0.0)
    reference = _reference_correlations(a.numpy(), v.numpy())[:6]  # the rest are 0 (rank of Cav)
    np.testing.assert_allclose(fitted.correlations, reference, rtol=1e-9)


def test_unseen_rows_are_centred_with_the_training_means():
    """Held-out rows, one at a time too, land where Hotelling's directions put them."""
    a, v = _pairs(400, 6, 5)
    held = _pairs(5, 6, 5, seed=1)[0] * 3.0  # another draw, far from the training mean
    fitted = fit_cca(a, v, 3, ridge=0.0)
    x = a.numpy() - a.numpy().mean(0)
    cav = x.T @ (v.numpy() - v.numpy().mean(0))
    cvv = np.cov(v.numpy().T) * (len(v) - 1)
    rho2, dirs = scipy.linalg.eigh(cav @ np.linalg.solve(cvv, cav.T), x.T @ x)
    dirs = dirs[:, np.argsort(rho2)[::-1][:3]] * np.sqrt(len(a) - 1)  # unit-variance variates
    sign = np.sign((x @ dirs * fitted.audio(a.numpy())).sum(0))
    reference = (held.numpy() - a.numpy().mean(0)) @ dirs * sign
    np.testing.assert_allclose(fitted.audio(held.numpy()), reference, atol=1e-8)
    np.testing.assert_allclose(fitted.audio(held.numpy()[2:3]), reference[2:3], atol=1e-8)


def test_the_ridge_is_relative_to_each_sides_variance():
    """Scaling a side leaves the fit unchanged (a ridge in absolute units would not)."""
    a, v = _pairs(60, 20, 15)
    base = fit_cca(a, v, 4, ridge=0.05)
    scaled = fit_cca(a * 100.0, v / 100.0, 4, ridge=0.05)
    np.testing.assert_allclose(scaled.correlations, base.correlations, rtol=1e-9)
    assert not np.allclose(fit_cca(a, v, 4, ridge=0.0).correlations, base.correlations)


def test_training_variates_are_canonical():
    """Unit variance, uncorrelated within a side, paired only with their own partner."""
    a, v = _pairs(300, 7, 5)
    fitted = fit_cca(a, v, 5, ridge=0.0)
    ua = fitted.audio(a.numpy())
    uv = fitted.visual(v.numpy())
    assert ua.shape == (300, 5) and uv.shape == (300, 5)
    np.testing.assert_allclose(ua.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(np.cov(ua.T), np.eye(5), atol=1e-9)
    np.testing.assert_allclose(np.cov(uv.T), np.eye(5), atol=1e-9)
    np.testing.assert_allclose(np.cov(ua.T, uv.T)[:5, 5:], np.diag(fitted.correlations), atol=1e-9)
    assert np.all(np.diff(fitted.correlations) <= 1e-12) and fitted.correlations[0] > 0.8


def test_agrees_with_sklearn_cca_where_nipals_converges():
    """Same canonical variates as sklearn's NIPALS CCA (up to sign and scale) on well-posed data."""
    from sklearn.cross_decomposition import CCA

    a, v = _pairs(500, 6, 5)
    ref = CCA(n_components=3, max_iter=5000, tol=1e-12).fit(a.numpy(), v.numpy())
    ref_a, ref_v = ref.transform(a.numpy(), v.numpy())
    ours = cca_project(fit_cca(a, v, 3, ridge=0.0), {"audio": a, "visual": v})
    for j in range(3):
        assert abs(np.corrcoef(ours["audio"][:, j].numpy(), ref_a[:, j])[0, 1]) > 0.9999
        assert abs(np.corrcoef(ours["visual"][:, j].numpy(), ref_v[:, j])[0, 1]) > 0.9999


def test_the_ridge_only_matters_when_pairs_are_few():
    a, v = _pairs(2000, 6, 5)
    plain, ridged = fit_cca(a, v, 3, ridge=0.0), fit_cca(a, v, 3)
    np.testing.assert_allclose(ridged.correlations, plain.correlations, atol=2e-3)
    # fewer pairs than dimensions: unregularised, every direction correlates perfectly
    a, v = _pairs(20, 40, 30)
    assert np.allclose(fit_cca(a, v, 5, ridge=0.0).correlations, 1.0)
    few = fit_cca(a, v, 50)
    assert few.correlations.shape == (19,)  # capped at M - 1
    assert few.correlations[0] < 1.0 and np.all(np.isfinite(few.audio(a.numpy())))


def test_constant_or_rank_deficient_sides_stay_finite():
    a, v = _pairs(50, 6, 5)
    a[:, 3:] = a[:, :3] * 2.0  # rank 3 of 6
    fitted = fit_cca(a, v, 5)
    assert fitted.correlations.shape == (3,)
    const = fit_cca(torch.ones(10, 4), v[:10], 2)
    assert const.correlations.shape == (1,)
    unseen = cca_project(const, {"audio": torch.zeros(3, 4), "visual": v[:3]})
    assert torch.equal(unseen["audio"], torch.zeros(3, 1))  # a constant side scores nothing
    assert torch.isfinite(unseen["visual"]).all()


def test_one_pair_is_refused_in_one_line():
    from avssl.errors import AvsslError

    with pytest.raises(AvsslError, match="at least 2 training pairs, got 1"):
        fit_cca(torch.randn(1, 4), torch.randn(1, 3))
    assert fit_cca(torch.randn(2, 4), torch.randn(2, 3)).correlations.shape == (1,)


@pytest.mark.parametrize("k", [1, 3])
def test_each_side_projected_alone_matches_joint(k):
    a, v = _pairs(40, 6, 5)
    fitted = fit_cca(a, v, k)
    joint = cca_project(fitted, {"audio": a[:7], "visual": v[:7]})
    alone_v = cca_project(fitted, {"audio": None, "visual": v[:7], "map": None})
    alone_a = cca_project(fitted, {"audio": a[:7], "visual": None})
    assert alone_v["audio"] is None and alone_a["visual"] is None and joint["map"] is None
    torch.testing.assert_close(alone_v["visual"], joint["visual"])
    torch.testing.assert_close(alone_a["audio"], joint["audio"])
    assert joint["audio"].dtype == torch.float32
    uneven = cca_project(fitted, {"audio": a[:2], "visual": v[:9]})  # Q != G
    assert uneven["audio"].shape == (2, k) and uneven["visual"].shape == (9, k)


@pytest.mark.parametrize("case", ["plain", "rank_deficient", "constant_visual"])
def test_the_linear_map_gives_the_variates(case):
    """``linear`` (what an l3 index stores to map a query) maps unseen rows as ``audio`` /
    ``visual`` do, for a rank-deficient and a constant side too."""
    a, v = _pairs(50, 12, 7)
    if case == "rank_deficient":
        a = a[:, :3] @ torch.randn(3, 12, generator=torch.Generator().manual_seed(1)).double()
    if case == "constant_visual":
        v = torch.ones_like(v)
    fitted = fit_cca(a, v, 5, ridge=1e-3)
    held_a, held_v = _pairs(4, 12, 7, seed=2)
    for side, rows in (("audio", held_a), ("visual", held_v)):
        mean, weights = fitted.linear(side)
        assert mean.dtype == weights.dtype == torch.float32
        assert weights.shape == (rows.shape[1], len(fitted.correlations))
        want = getattr(fitted, side)(rows.numpy())
        got = ((rows.float() - mean) @ weights).double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(initial=1))
