"""Percentile bootstrap confidence intervals of a per-case metric mean.

MONAI's metrics return one value per case; a benchmark reports their mean with a confidence interval.
The interval here is the percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*,
1993, ch. 13): resample the cases with replacement ``n_resamples`` times, take the mean of each
resample, and report the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means.
Seeded, so a benchmark's results file is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "summarize_cases"]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap CI of the mean (or of ``statistic``) of per-case values.

    Non-finite values (``nan``/``inf``, e.g. a Hausdorff distance for an empty prediction) are left out
    of the statistic and counted in ``n_excluded``.

    Args:
        values: one number per case.
        n_resamples: number of bootstrap resamples (>= 1).
        confidence: coverage of the interval, in ``(0, 1)``.
        seed: seed of the ``numpy.random.default_rng`` used for resampling.
        statistic: function of a ``(n_resamples, n)`` array returning ``(n_resamples,)`` values, applied
            along axis 1; default the mean.

    Returns:
        ``{"mean", "ci_low", "ci_high", "n", "n_excluded", "n_resamples", "confidence"}``; ``mean`` is the
        statistic on all finite values. With no finite value, ``mean``/``ci_*`` are ``None``; with one
        value the interval is that value.

    Raises:
        ValueError: ``values`` is not one-dimensional, ``n_resamples < 1`` or ``confidence`` not in (0, 1).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"bootstrap_ci: values must be one-dimensional (one per case), got shape {arr.shape}")
    if int(n_resamples) < 1:
        raise ValueError(f"bootstrap_ci: n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"bootstrap_ci: confidence must lie in (0, 1), got {confidence}")
    stat = statistic if statistic is not None else (lambda a: np.mean(a, axis=-1))
    finite = arr[np.isfinite(arr)]
    out: dict[str, Any] = {
        "n": int(finite.size),
        "n_excluded": int(arr.size - finite.size),
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
    }
    if finite.size == 0:
        out.update(mean=None, ci_low=None, ci_high=None)
        return out
    point = float(stat(finite[None, :])[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, finite.size, size=(int(n_resamples), finite.size))
    resampled = np.asarray(stat(finite[idx]), dtype=np.float64)
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
    out.update(mean=point, ci_low=float(low), ci_high=float(high))
    return out


def summarize_cases(
    cases: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Bootstrap summary of every numeric key over a list of per-case metric dicts.

    Args:
        cases: one mapping per case, e.g. from :func:`usseg_monai.metrics.case_metrics`.
        keys: keys to summarise; default every key whose value is a number (bools count as 0/1) in the
            first case.
        n_resamples, confidence, seed: see :func:`bootstrap_ci` (the same seed for every key).

    Returns:
        ``{key: bootstrap_ci(...)}``.
    """
    if not cases:
        return {}
    if keys is None:
        keys = [k for k, v in cases[0].items() if isinstance(v, (int, float, np.number, bool, np.bool_))]
    summary = {}
    for k in keys:
        vals = [np.nan if c.get(k) is None else float(c[k]) for c in cases]
        summary[k] = bootstrap_ci(vals, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return summary
