"""L1-regularised linear regression solved in torch, with sklearn Lasso's objective and exact zeros.

Why not sklearn's Lasso: the project wants one torch model that runs on a GPU where one is present.
Why this solver: the listing data has n >> p (tens of thousands of rows, a few hundred features),
so everything after one pass over the data works on the p x p Gram matrix in float64. FISTA with
adaptive restart takes proximal (soft-thresholding) steps, so coefficients are exactly zero, and it
stops on sklearn's relative duality-gap criterion, so `tol` means the same as in sklearn.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

logger = logging.getLogger(__name__)

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# Duality gap is computed every this many iterations (it costs about one extra iteration).
_GAP_EVERY = 10


def resolve_device(device: str) -> torch.device:
    """Map 'auto' to CUDA when present, else CPU; 'cuda' without a GPU is an error, no fallback."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA device")
    return torch.device(device)


def _soft_threshold(v: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.sign(v) * torch.clamp(v.abs() - threshold, min=0.0)


class TorchLasso(RegressorMixin, BaseEstimator):
    """Lasso on standardized features: min (1/(2n))||y - Xs w - b||^2 + alpha ||w||_1.

    Features are standardized inside fit (population std; constant columns keep scale 1), so alpha
    penalises every feature alike whatever its unit; `coef_`/`intercept_` are mapped back to the
    original feature scale, so `predict(X) == X @ coef_ + intercept_`. Fitted state is numpy only,
    so the estimator pickles and loads on a machine without the device it was trained on.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        max_iter: int = 1000,
        tol: float = 1e-4,
        fit_intercept: bool = True,
        device: str = "auto",
    ) -> None:
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.fit_intercept = fit_intercept
        self.device = device

    def _check_params(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
            raise ValueError(f"alpha must be a number >= 0, got {self.alpha!r}")
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, int | float) or self.tol <= 0:
            raise ValueError(f"tol must be a number > 0, got {self.tol!r}")

    @staticmethod
    def _dense(X: Any) -> np.ndarray:
        if sp.issparse(X):
            X = X.toarray()
        return np.asarray(X, dtype=np.float64)

    def fit(self, X: Any, y: Any) -> TorchLasso:
        """Standardize X, solve the lasso on the Gram matrix, store numpy coefficients."""
        self._check_params()
        device = resolve_device(self.device)
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc", "coo"], dtype=np.float64, y_numeric=True
        )
        Xd = self._dense(X)
        yd = np.asarray(y, dtype=np.float64).ravel()
        n, p = Xd.shape

        Xt = torch.from_numpy(Xd).to(device)
        yt = torch.from_numpy(yd).to(device)
        if self.fit_intercept:
            mean = Xt.mean(dim=0)
            y_mean = yt.mean()
        else:
            mean = torch.zeros(p, dtype=torch.float64, device=device)
            y_mean = torch.zeros((), dtype=torch.float64, device=device)
        scale = Xt.std(dim=0, correction=0)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        Xs = (Xt - mean) / scale
        yc = yt - y_mean

        gram = Xs.T @ Xs / n
        xty = Xs.T @ yc / n
        yty = float(yc @ yc) / n
        del Xt, Xs

        w, n_iter, gap = self._fista(gram, xty, yty, float(self.alpha))

        w_np = w.cpu().numpy()
        mean_np = mean.cpu().numpy()
        scale_np = scale.cpu().numpy()
        self.mean_ = mean_np
        self.scale_ = scale_np
        self.coef_std_ = w_np
        self.intercept_std_ = float(y_mean)
        self.coef_ = w_np / scale_np
        self.intercept_ = float(y_mean) - float(mean_np @ self.coef_)
        self.n_iter_ = n_iter
        self.dual_gap_ = gap
        logger.info(
            "TorchLasso fit: n=%d p=%d alpha=%g nonzero=%d n_iter=%d gap=%.3g device=%s",
            n,
            p,
            self.alpha,
            int(np.count_nonzero(w_np)),
            n_iter,
            gap,
            device.type,
        )
        return self

    def _fista(
        self, gram: torch.Tensor, xty: torch.Tensor, yty: float, alpha: float
    ) -> tuple[torch.Tensor, int, float]:
        """FISTA with gradient-based adaptive restart on 0.5 w'Gw - c'w + alpha|w|_1."""
        p = gram.shape[0]
        w = torch.zeros(p, dtype=torch.float64, device=gram.device)
        if p == 0:
            return w, 0, 0.0
        lipschitz = float(torch.linalg.eigvalsh(gram)[-1]) if p else 0.0
        if lipschitz <= 0.0:  # all features constant: w = 0 is optimal
            return w, 0, 0.0
        step = 1.0 / lipschitz
        threshold = alpha * step
        # sklearn's stopping rule: duality gap (of the n-scaled objective) <= tol * ||y||^2.
        gap_tol = float(self.tol) * yty
        z = w.clone()
        t = 1.0
        gap = self._duality_gap(gram, xty, yty, alpha, w)
        n_iter = 0
        if gap <= gap_tol:
            return w, n_iter, gap
        for n_iter in range(1, self.max_iter + 1):
            grad = gram @ z - xty
            w_next = _soft_threshold(z - step * grad, threshold)
            # Restart momentum when it points uphill (O'Donoghue & Candes, 2015).
            if float(torch.dot(z - w_next, w_next - w)) > 0.0:
                t = 1.0
                z = w_next
            else:
                t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
                z = w_next + ((t - 1.0) / t_next) * (w_next - w)
                t = t_next
            w = w_next
            if n_iter % _GAP_EVERY == 0 or n_iter == self.max_iter:
                gap = self._duality_gap(gram, xty, yty, alpha, w)
                if gap <= gap_tol:
                    break
        else:
            warnings.warn(
                f"TorchLasso did not converge in {self.max_iter} iterations "
                f"(duality gap {gap:.3g} > {gap_tol:.3g}); raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        return w, n_iter, gap

    @staticmethod
    def _duality_gap(
        gram: torch.Tensor, xty: torch.Tensor, yty: float, alpha: float, w: torch.Tensor
    ) -> float:
        """Duality gap of the (1/n)-scaled problem, as sklearn's coordinate descent computes it."""
        gw = gram @ w
        wxty = float(w @ xty)
        r2 = max(yty - 2.0 * wxty + float(w @ gw), 0.0)  # ||r||^2 / n
        dual_norm = float((xty - gw).abs().max())  # ||X'r||_inf / n
        const = alpha / dual_norm if dual_norm > alpha else 1.0
        l1 = float(w.abs().sum())
        return 0.5 * r2 * (1.0 + const * const) + alpha * l1 - const * (yty - wxty)

    def predict(self, X: Any) -> np.ndarray:
        """X @ coef_ + intercept_ on the original feature scale."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, accept_sparse=["csr", "csc", "coo"], reset=False)
        out = X @ self.coef_ + self.intercept_
        return np.asarray(out, dtype=np.float64).ravel()

    def objective(self, X: Any, y: Any) -> float:
        """Lasso objective (1/(2n))||y - Xs w - b||^2 + alpha||w||_1 on the standardized data.

        The residual on standardized data equals the residual of `predict`, so this is the
        quantity sklearn's Lasso minimises when fitted on the same standardized features.
        """
        check_is_fitted(self, "coef_")
        residual = np.asarray(y, dtype=np.float64).ravel() - self.predict(X)
        return float(0.5 * np.mean(residual**2) + float(self.alpha) * np.abs(self.coef_std_).sum())

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
