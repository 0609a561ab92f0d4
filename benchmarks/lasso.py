"""torch_lasso against scikit-learn's Lasso: same standardized data, same alpha, same tolerance.

    python -m benchmarks.lasso                                   # 200,000 x 200 and 1,000,000 x 100
    python -m benchmarks.lasso --sizes 20000x50 --repeats 1      # quicker
    python -m benchmarks.lasso --device cuda --sizes 1000000x500 # on a GPU: torch on the GPU
                                                                 # (transfer included), sklearn
                                                                 # on the same machine's CPU

The problem: features with AR(1) correlation (rho 0.8, as correlated as neighbouring one-hot and
TF-IDF columns get), standardized once and given to both solvers; a sparse truth (10 % of the
features), unit noise; alpha = 1 % of alpha_max (the smallest alpha that zeroes every weight).
Both stop on sklearn's rule, duality gap <= tol * ||y - mean(y)||^2, at the same tol.
Both objectives, 1/(2n) ||y - Xw - b||^2 + alpha ||w||_1, are computed here by one formula.
Timings are medians of alternating runs after one warm-up fit of each on a small problem.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import Report, command_line, median, out

DEFAULT_SIZES = "200000x200,1000000x100"
# Targets of the issue: CPU time at most this share of sklearn's; GPU at least this many times
# faster than sklearn on the CPU; objectives equal to this relative gap.
CPU_TIME_RATIO = 0.5
GPU_SPEEDUP = 20.0
OBJECTIVE_GAP = 1e-6


def make_problem(
    n: int, p: int, rho: float = 0.8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Standardized AR(1)-correlated X, y from a sparse truth; returns X, y and alpha_max."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    for j in range(1, p):
        X[:, j] *= np.sqrt(1.0 - rho * rho)
        X[:, j] += rho * X[:, j - 1]
    truth = np.zeros(p)
    support = rng.choice(p, size=max(1, p // 10), replace=False)
    truth[support] = rng.normal(size=support.size)
    y = X @ truth + rng.standard_normal(n) + 3.0
    X -= X.mean(axis=0)
    X /= X.std(axis=0)
    alpha_max = float(np.abs(X.T @ (y - y.mean())).max() / n)
    return X, y, alpha_max


def objective(
    X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, alpha: float
) -> float:
    residual = y - X @ coef - intercept
    return float(0.5 * np.mean(residual * residual) + alpha * np.abs(coef).sum())


def _fit_sklearn(X: np.ndarray, y: np.ndarray, alpha: float, tol: float) -> tuple[Any, float]:
    from sklearn.linear_model import Lasso

    started = time.perf_counter()
    model = Lasso(alpha=alpha, tol=tol, max_iter=100_000).fit(X, y)
    return model, time.perf_counter() - started


def _fit_torch(
    X: np.ndarray, y: np.ndarray, alpha: float, tol: float, device: str
) -> tuple[Any, float]:
    from steps.train.torch_lasso import TorchLasso

    started = time.perf_counter()
    model = TorchLasso(alpha=alpha, tol=tol, max_iter=100_000, device=device).fit(X, y)
    return model, time.perf_counter() - started  # fit returns numpy: the device is synchronized


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks.lasso", description=__doc__)
    parser.add_argument("--sizes", default=None, help=f"NxP,... (default {DEFAULT_SIZES})")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alpha-fraction", type=float, default=0.01, help="alpha / alpha_max")
    parser.add_argument("--tol", type=float, default=1e-6, help="both solvers' tol")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes_text = args.sizes or ("1000000x500" if args.device == "cuda" else DEFAULT_SIZES)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in sizes_text.split(",")]
    name = "lasso" if args.device == "cpu" else f"lasso_{args.device}"
    report = Report(name, command_line())
    warnings.simplefilter("ignore", category=UserWarning)

    X_small, y_small, amax = make_problem(2_000, 20, seed=1)
    _fit_sklearn(X_small, y_small, 0.01 * amax, args.tol)
    _fit_torch(X_small, y_small, 0.01 * amax, args.tol, args.device)

    rows: list[list[Any]] = []
    figures: list[dict[str, Any]] = []
    for n, p in sizes:
        started = time.perf_counter()
        X, y, alpha_max = make_problem(n, p)
        alpha = args.alpha_fraction * alpha_max
        out(f"{n:,} x {p}: data made in {time.perf_counter() - started:.1f} s, alpha {alpha:.4g}")
        sk_times: list[float] = []
        torch_times: list[float] = []
        sk_model = torch_model = None
        for repeat in range(args.repeats):
            sk_model, sk_seconds = _fit_sklearn(X, y, alpha, args.tol)
            torch_model, torch_seconds = _fit_torch(X, y, alpha, args.tol, args.device)
            sk_times.append(sk_seconds)
            torch_times.append(torch_seconds)
            out(
                f"  run {repeat + 1}/{args.repeats}: sklearn {sk_seconds:.3f} s, "
                f"torch_lasso ({args.device}) {torch_seconds:.3f} s"
            )
        assert sk_model is not None and torch_model is not None
        sk_obj = objective(X, y, sk_model.coef_, float(sk_model.intercept_), alpha)
        torch_obj = objective(X, y, torch_model.coef_std_, torch_model.intercept_std_, alpha)
        gap = abs(torch_obj - sk_obj) / abs(sk_obj)
        same_support = bool(np.array_equal(sk_model.coef_ != 0, torch_model.coef_std_ != 0))
        sk_s, torch_s = median(sk_times), median(torch_times)
        figure = {
            "n": n,
            "p": p,
            "alpha": alpha,
            "sklearn_seconds": sk_s,
            "torch_seconds": torch_s,
            "time_ratio": torch_s / sk_s,
            "sklearn_objective": sk_obj,
            "torch_objective": torch_obj,
            "relative_gap": gap,
            "sklearn_nonzero": int(np.count_nonzero(sk_model.coef_)),
            "torch_nonzero": int(np.count_nonzero(torch_model.coef_std_)),
            "same_support": same_support,
            "sklearn_n_iter": int(sk_model.n_iter_),
            "torch_n_iter": int(torch_model.n_iter_),
            "sklearn_runs": sk_times,
            "torch_runs": torch_times,
        }
        figures.append(figure)
        rows.append(
            [
                f"{n:,} x {p}",
                sk_s,
                torch_s,
                torch_s / sk_s,
                f"{sk_obj:.12g}",
                f"{torch_obj:.12g}",
                gap,
                f"{figure['sklearn_nonzero']} / {figure['torch_nonzero']}",
                same_support,
            ]
        )
        size = f"{n:,} x {p}"
        if args.device == "cpu":
            report.target(
                f"time ratio {size}", torch_s / sk_s, f"<= {CPU_TIME_RATIO}",
                torch_s / sk_s <= CPU_TIME_RATIO,
            )  # fmt: skip
        else:
            report.target(
                f"GPU speed-up {size}", sk_s / torch_s, f">= {GPU_SPEEDUP:.0f}x",
                sk_s / torch_s >= GPU_SPEEDUP,
            )  # fmt: skip
        report.target(f"objective gap {size}", gap, f"< {OBJECTIVE_GAP:g}", gap < OBJECTIVE_GAP)
        report.target(f"same support {size}", same_support, "exact zeros equal", same_support)
        del X, y

    report.table(
        f"Lasso, tol {args.tol:g}, alpha = {args.alpha_fraction:g} x alpha_max, "
        f"torch_lasso on {args.device} (median of {args.repeats})",
        [
            "n x p",
            "sklearn s",
            "torch_lasso s",
            "ratio",
            "sklearn objective",
            "torch objective",
            "rel. gap",
            "nonzero sk / torch",
            "same support",
        ],
        rows,
    )
    report.extra = {"device": args.device, "tol": args.tol, "figures": figures}
    report.finish(args.results_dir)
    return 1 if args.check and not report.all_met else 0


if __name__ == "__main__":
    sys.exit(main())
