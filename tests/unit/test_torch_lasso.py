"""TorchLasso solves sklearn Lasso's problem on standardized features, with exact zeros."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

from steps.train.torch_lasso import TorchLasso, resolve_device


def _problem(n: int = 200, p: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A sparse ground truth on badly scaled, shifted features (what standardization is for)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 5.0, size=p) + rng.normal(size=p)
    w = np.zeros(p)
    w[:5] = rng.normal(size=5) * 3.0
    y = X @ w + rng.normal(size=n) + 4.0
    return X, y


def _sklearn_objective(model: Lasso, Xs: np.ndarray, y: np.ndarray, alpha: float) -> float:
    residual = y - model.predict(Xs)
    return float(0.5 * np.mean(residual**2) + alpha * np.abs(model.coef_).sum())


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_matches_sklearn_lasso_objective_and_support(alpha: float) -> None:
    X, y = _problem()
    ours = TorchLasso(alpha=alpha, tol=1e-12, max_iter=100_000, device="cpu").fit(X, y)
    Xs = StandardScaler().fit_transform(X)
    ref = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(Xs, y)

    expected = _sklearn_objective(ref, Xs, y, alpha)
    assert abs(ours.objective(X, y) - expected) / expected < 1e-6
    np.testing.assert_array_equal(ours.coef_std_ != 0, ref.coef_ != 0)
    np.testing.assert_allclose(ours.coef_std_, ref.coef_, atol=1e-6)


def test_without_intercept_matches_sklearn() -> None:
    X, y = _problem(seed=1)
    alpha = 0.1
    ours = TorchLasso(alpha=alpha, tol=1e-12, max_iter=100_000, fit_intercept=False).fit(X, y)
    Xs = X / X.std(axis=0)
    ref = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000, fit_intercept=False).fit(Xs, y)
    assert ours.intercept_ == 0.0
    expected = _sklearn_objective(ref, Xs, y, alpha)
    assert abs(ours.objective(X, y) - expected) / expected < 1e-6


def test_gives_exact_zeros_and_all_zero_for_large_alpha() -> None:
    X, y = _problem()
    model = TorchLasso(alpha=0.5, device="cpu").fit(X, y)
    assert np.any(model.coef_ == 0.0)
    assert np.any(model.coef_ != 0.0)
    flat = TorchLasso(alpha=1e6).fit(X, y)
    assert np.all(flat.coef_ == 0.0)
    np.testing.assert_allclose(flat.predict(X), np.full(len(y), y.mean()))


def test_predict_is_on_original_feature_scale() -> None:
    X, y = _problem()
    model = TorchLasso(alpha=0.05).fit(X, y)
    np.testing.assert_allclose(model.predict(X), X @ model.coef_ + model.intercept_, rtol=1e-12)
    np.testing.assert_allclose(model.coef_, model.coef_std_ / X.std(axis=0), rtol=1e-12)
    assert model.score(X, y) > 0.9


def test_sparse_input_gives_the_dense_result() -> None:
    X, y = _problem()
    X[np.abs(X) < 1.0] = 0.0
    dense = TorchLasso(alpha=0.05).fit(X, y)
    sparse = TorchLasso(alpha=0.05).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.predict(sp.csr_matrix(X)), dense.predict(X), rtol=1e-10)


def test_pickle_round_trip_and_determinism() -> None:
    X, y = _problem()
    model = TorchLasso(alpha=0.05).fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert isinstance(restored.coef_, np.ndarray)
    again = TorchLasso(alpha=0.05).fit(X, y)
    np.testing.assert_array_equal(again.coef_, model.coef_)
    assert model.n_iter_ >= 1


def test_constant_feature_gets_zero_weight() -> None:
    X, y = _problem()
    X[:, 3] = 7.0
    model = TorchLasso(alpha=0.01).fit(X, y)
    assert model.coef_[3] == 0.0
    assert np.all(np.isfinite(model.predict(X)))


def test_warns_when_not_converged() -> None:
    X, y = _problem()
    with pytest.warns(ConvergenceWarning):
        model = TorchLasso(alpha=1e-4, tol=1e-15, max_iter=3).fit(X, y)
    assert model.n_iter_ == 3


@pytest.mark.parametrize(
    "params",
    [{"alpha": -1.0}, {"max_iter": 0}, {"tol": 0.0}, {"device": "tpu"}, {"alpha": "big"}],
)
def test_rejects_invalid_parameters(params: dict[str, object]) -> None:
    X, y = _problem()
    with pytest.raises(ValueError):
        TorchLasso(**params).fit(X, y)  # type: ignore[arg-type]


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}


def test_large_offsets_take_the_shifted_pass_and_still_match_sklearn() -> None:
    """A column whose mean dwarfs its spread (latitude-like) must not lose digits to centering."""
    X, y = _problem(seed=2)
    X[:, 0] = 1e6 + X[:, 0] * 1e-2
    alpha = 0.05
    ours = TorchLasso(alpha=alpha, tol=1e-12, max_iter=100_000, device="cpu").fit(X, y)
    Xs = StandardScaler().fit_transform(X)
    ref = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(Xs, y)
    expected = _sklearn_objective(ref, Xs, y, alpha)
    assert abs(ours.objective(X, y) - expected) / expected < 1e-6
    np.testing.assert_array_equal(ours.coef_std_ != 0, ref.coef_ != 0)
    np.testing.assert_allclose(ours.mean_, X.mean(axis=0), rtol=1e-12)


def test_chunked_pass_gives_the_one_pass_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shifted row chunks (the large-offset and accelerator layout) sum to the same Gram."""
    import steps.train.torch_lasso as module

    X, y = _problem(n=500, seed=3)
    X[:, 1] += 1e5
    whole = TorchLasso(alpha=0.05, tol=1e-12, max_iter=100_000).fit(X, y)
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 7 * X.shape[1])  # 7 rows a chunk
    chunked = TorchLasso(alpha=0.05, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(chunked.coef_std_, whole.coef_std_, rtol=1e-9, atol=1e-12)


def test_small_alpha_through_the_warm_start_path_matches_sklearn() -> None:
    X, y = _problem(n=400, p=40, seed=4)
    model = TorchLasso(alpha=1e-4, tol=1e-10, max_iter=100_000).fit(X, y)
    Xs = StandardScaler().fit_transform(X)
    ref = Lasso(alpha=1e-4, tol=1e-10, max_iter=100_000).fit(Xs, y)
    expected = _sklearn_objective(ref, Xs, y, 1e-4)
    assert abs(model.objective(X, y) - expected) / expected < 1e-6
    assert model.dual_gap_ <= 1e-10 * np.sum((y - y.mean()) ** 2) / len(y)
