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
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import blas
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

logger = logging.getLogger(__name__)

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# Duality gap is computed every this many iterations (it costs about one extra iteration).
_GAP_EVERY = 10
# Warm-start path: each solve lowers alpha by at most this factor, from alpha_max down.
_PATH_RATIO = 0.1
# Elements per chunk of a chunked pass over X (32 MiB of float64): large enough for BLAS speed,
# small enough to bound the host buffer and the device memory.
_CHUNK_ELEMENTS = 1 << 22
# Centering the raw products is accurate while mean^2 <= this x variance for every column (and y);
# beyond it a shifted pass is made. 1e4 keeps at least 12 of float64's 16 significant digits.
_CANCELLATION_RATIO = 1e4


@dataclass(frozen=True)
class _Moments:
    """What the solver needs from the data, all on standardized features, scaled by 1/n."""

    gram: torch.Tensor  # Xs'Xs / n
    xty: torch.Tensor  # Xs'(y - y_mean) / n
    yty: float  # ||y - y_mean||^2 / n
    mean: torch.Tensor
    scale: torch.Tensor
    y_mean: float


@dataclass(frozen=True)
class _Sums:
    """Sums over the rows of (X - shift) and (y - y_shift)."""

    gram: torch.Tensor
    xty: torch.Tensor
    col_sum: torch.Tensor
    y_sum: float
    yy: float


def _sums(
    X: Any,
    y: np.ndarray,
    shift: np.ndarray | None,
    y_shift: float,
    device: torch.device,
) -> _Sums:
    """X'X, X'y and the sums of (X - shift, y - y_shift) as float64 tensors on `device`."""
    if device.type == "cpu":
        return _sums_cpu(X, y, shift, y_shift)
    return _sums_device(X, y, shift, y_shift, device)


def _syrk_upper(a_t: np.ndarray, into: np.ndarray | None) -> np.ndarray:
    """Upper triangle of a_t @ a_t.T (+ into) by BLAS syrk: half the work of a full product.

    `a_t` is the transpose view of a C-ordered row block, so it is Fortran-ordered: no copy.
    """
    if into is None:
        out: np.ndarray = blas.dsyrk(1.0, a_t, lower=0)
        return out
    out = blas.dsyrk(1.0, a_t, beta=1.0, c=into, lower=0, overwrite_c=1)
    return out


def _symmetric(upper: np.ndarray) -> np.ndarray:
    return np.triu(upper) + np.triu(upper, 1).T


def _rows(X: Any, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows start:stop of X (dense of any float dtype, or sparse) as float64, C-ordered: a view
    of float64 dense data, else a converted copy (into `out` when given)."""
    block = X[start:stop]
    if sp.issparse(block):
        block = block.toarray()
    if block.dtype == np.float64 and block.flags.c_contiguous:
        return np.asarray(block)
    if out is None:
        return np.ascontiguousarray(block, dtype=np.float64)
    target = out[: block.shape[0]]
    target[...] = block
    return target


def _sums_cpu(X: Any, y: np.ndarray, shift: np.ndarray | None, y_shift: float) -> _Sums:
    """On the CPU: float64 dense X as it is (no copy) without a shift; otherwise (a shift, a
    float32 or sparse X) float64 row chunks in one buffer, so X is never copied whole."""
    n, p = X.shape
    target = y - y_shift
    whole = isinstance(X, np.ndarray) and X.dtype == np.float64 and X.flags.c_contiguous
    if shift is None and whole:
        gram = _symmetric(_syrk_upper(X.T, None))
        xty = X.T @ target
        col_sum = X.T @ np.ones(n)  # a BLAS matrix-vector product: faster than a column sum
    else:
        rows = max(1, min(n, _CHUNK_ELEMENTS // max(p, 1)))
        buffer = np.empty((rows, p))
        upper = np.zeros((p, p), order="F")
        xty = np.zeros(p)
        col_sum = np.zeros(p)
        for start in range(0, n, rows):
            chunk = _rows(X, start, start + rows, buffer)
            if shift is not None:
                chunk = np.subtract(chunk, shift, out=buffer[: chunk.shape[0]])
            upper = _syrk_upper(chunk.T, upper)
            xty += chunk.T @ target[start : start + rows]
            col_sum += chunk.sum(axis=0)
        gram = _symmetric(upper)
    return _Sums(
        gram=torch.from_numpy(np.ascontiguousarray(gram)),
        xty=torch.from_numpy(np.asarray(xty, dtype=np.float64)),
        col_sum=torch.from_numpy(np.asarray(col_sum, dtype=np.float64)),
        y_sum=float(target.sum()),
        yy=float(target @ target),
    )


def _sums_device(
    X: Any, y: np.ndarray, shift: np.ndarray | None, y_shift: float, device: torch.device
) -> _Sums:
    """On an accelerator: row chunks are copied over one by one (a GPU holds one chunk, never
    all of X), shifted there and accumulated, so the host-to-device transfer is the one pass."""
    n, p = X.shape
    dtype = torch.float64
    rows = max(1, min(n, _CHUNK_ELEMENTS // max(p, 1)))
    y_host = torch.from_numpy(y)
    shift_t = None if shift is None else torch.from_numpy(shift).to(device)
    gram = torch.zeros((p, p), dtype=dtype, device=device)
    xty = torch.zeros(p, dtype=dtype, device=device)
    col_sum = torch.zeros(p, dtype=dtype, device=device)
    y_sum = torch.zeros((), dtype=dtype, device=device)
    yy = torch.zeros((), dtype=dtype, device=device)
    for start in range(0, n, rows):
        chunk = torch.from_numpy(_rows(X, start, start + rows)).to(device)
        if shift_t is not None:
            chunk.sub_(shift_t)
        target = y_host[start : start + rows].to(device) - y_shift
        gram.addmm_(chunk.T, chunk)
        xty.addmv_(chunk.T, target)
        col_sum += chunk.sum(dim=0)
        y_sum += target.sum()
        yy += target @ target
    return _Sums(gram=gram, xty=xty, col_sum=col_sum, y_sum=float(y_sum), yy=float(yy))


def _standardized_moments(
    X: Any, y: np.ndarray, fit_intercept: bool, device: torch.device
) -> _Moments:
    """Gram matrix, X'y and y'y of the standardized, centered data from one pass over X.

    Centering and scaling are done on the p x p products, so no standardized copy of X is made.
    Centering raw products loses digits when a column's mean dwarfs its spread (|mean|/std of
    100 loses 4 of float64's 16), so on the CPU such data gets a second, shifted pass; on an
    accelerator the single pass is always shifted by the first chunk's means.
    """
    n, p = X.shape
    y = np.ascontiguousarray(y, dtype=np.float64)
    shift: np.ndarray | None = None
    y_shift = 0.0
    if device.type != "cpu" and fit_intercept:
        head = max(1, _CHUNK_ELEMENTS // max(p, 1))
        shift = _rows(X, 0, head).mean(axis=0)
        y_shift = float(y[:head].mean())
    sums = _sums(X, y, shift, y_shift, device)
    if device.type == "cpu" and fit_intercept:
        mean = sums.col_sum.numpy() / n
        spread = np.diagonal(sums.gram.numpy()) / n - mean * mean
        y_mean = sums.y_sum / n
        y_spread = sums.yy / n - y_mean * y_mean
        squares = np.append(mean * mean, y_mean * y_mean)
        spreads = np.clip(np.append(spread, y_spread), 0.0, None)
        if np.any(squares > _CANCELLATION_RATIO * spreads):
            shift, y_shift = mean, y_mean
            sums = _sums(X, y, shift, y_shift, device)

    zero = torch.zeros(p, dtype=torch.float64, device=device)
    shift_t = zero if shift is None else torch.from_numpy(shift).to(device)
    d = sums.col_sum / n  # column mean minus shift
    dy = sums.y_sum / n
    # Centered products: sum (x - m)(x - m)' = sum (x - s)(x - s)' - n (m - s)(m - s)'.
    centered = sums.gram - n * torch.outer(d, d)
    scale = torch.sqrt(torch.clamp(torch.diagonal(centered) / n, min=0.0))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if fit_intercept:
        mean_t = shift_t + d
        y_mean = y_shift + dy
        gram, xty, yty = centered, sums.xty - n * d * dy, sums.yy - n * dy * dy
    else:  # no centering: the raw products (no shift), scaled by the centered spread
        mean_t, y_mean = zero, 0.0
        gram, xty, yty = sums.gram, sums.xty, sums.yy
    return _Moments(
        gram=gram / torch.outer(scale, scale) / n,
        xty=xty / scale / n,
        yty=max(yty, 0.0) / n,
        mean=mean_t,
        scale=scale,
        y_mean=float(y_mean),
    )


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
    so the estimator is stored as plain arrays (skops, no pickle) and loads on a machine without
    the device it was trained on.
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

    def fit(self, X: Any, y: Any) -> TorchLasso:
        """Standardize X, solve the lasso on the Gram matrix, store numpy coefficients."""
        self._check_params()
        device = resolve_device(self.device)
        # float32 stays float32 and sparse stays sparse: the products are accumulated in float64
        # over row chunks (_sums), so X is never copied whole.
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
            y_numeric=True,
        )
        yd = np.asarray(y, dtype=np.float64).ravel()
        n, p = X.shape

        moments = _standardized_moments(X, yd, bool(self.fit_intercept), device)
        gram, xty, yty = moments.gram, moments.xty, moments.yty
        w, n_iter, gap = self._solve_path(gram, xty, yty, float(self.alpha))

        w_np = w.cpu().numpy()
        mean_np = moments.mean.cpu().numpy()
        scale_np = moments.scale.cpu().numpy()
        self.mean_ = mean_np
        self.scale_ = scale_np
        self.coef_std_ = w_np
        self.intercept_std_ = moments.y_mean
        self.coef_ = w_np / scale_np
        self.intercept_ = moments.y_mean - float(mean_np @ self.coef_)
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

    def _solve_path(
        self, gram: torch.Tensor, xty: torch.Tensor, yty: float, alpha: float
    ) -> tuple[torch.Tensor, int, float]:
        """Solve at `alpha`, warm-started along a geometric path down from alpha_max.

        alpha_max = ||X'y||_inf / n is where every coefficient becomes zero. Small alphas are
        reached through a few larger ones, each solved to the same relative tolerance: the
        solution at one alpha is close to the next, so FISTA needs far fewer iterations than from
        zero, and the iterates stay sparse on the way down.
        """
        p = gram.shape[0]
        w = torch.zeros(p, dtype=gram.dtype, device=gram.device)
        if p == 0:
            return w, 0, 0.0
        lipschitz = float(torch.linalg.eigvalsh(gram)[-1])
        if lipschitz <= 0.0:  # all features constant: w = 0 is optimal
            return w, 0, 0.0
        alpha_max = float(xty.abs().max())
        path: list[float] = []
        if 0 < alpha < alpha_max * _PATH_RATIO:
            steps = int(np.ceil(np.log(alpha / alpha_max) / np.log(_PATH_RATIO)))
            path = [float(a) for a in np.geomspace(alpha_max, alpha, steps + 1)[1:-1]]
        total = 0
        for step_alpha in path:
            w, used, _ = self._fista(
                gram, xty, yty, step_alpha, w, lipschitz, self.max_iter - total, final=False
            )
            total += used
        w, used, gap = self._fista(
            gram, xty, yty, alpha, w, lipschitz, self.max_iter - total, final=True
        )
        return w, total + used, gap

    def _fista(
        self,
        gram: torch.Tensor,
        xty: torch.Tensor,
        yty: float,
        alpha: float,
        w: torch.Tensor,
        lipschitz: float,
        max_iter: int,
        final: bool,
    ) -> tuple[torch.Tensor, int, float]:
        """FISTA with gradient-based adaptive restart on 0.5 w'Gw - c'w + alpha|w|_1, from `w`."""
        step = 1.0 / lipschitz
        threshold = alpha * step
        # sklearn's stopping rule: duality gap (of the n-scaled objective) <= tol * ||y||^2. It is
        # relative to ||y||^2, so it means the same in float32 as in float64.
        gap_tol = float(self.tol) * yty
        z = w.clone()
        t = 1.0
        gap = self._duality_gap(gram, xty, yty, alpha, w)
        n_iter = 0
        if gap <= gap_tol:
            return w, n_iter, gap
        for n_iter in range(1, max_iter + 1):
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
            if n_iter % _GAP_EVERY == 0 or n_iter == max_iter:
                gap = self._duality_gap(gram, xty, yty, alpha, w)
                if gap <= gap_tol:
                    break
        else:
            if final:
                warnings.warn(
                    f"TorchLasso did not converge in {self.max_iter} iterations "
                    f"(duality gap {gap:.3g} > {gap_tol:.3g}); raise max_iter or tol",
                    ConvergenceWarning,
                    stacklevel=4,
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
