"""Similarity between two maps, for sanity checks (Adebayo et al. 2018): Spearman rank correlation, SSIM."""
from __future__ import annotations

import numpy as np

from minicam.metrics.checks import plain_array, check_finite, check_positive_int


# ----------------------------------------------------------------------------
# Similarity between two maps (Adebayo et al. 2018, "Sanity checks for saliency maps")
# ----------------------------------------------------------------------------


def _pair(a, b):
    a, b = plain_array(a), plain_array(b)
    if a.shape != b.shape:
        raise ValueError(f"the two maps must have the same shape; got {a.shape} and {b.shape}")
    check_finite(a, "a")
    check_finite(b, "b")
    return a.astype(np.float64), b.astype(np.float64)


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of the flattened values; tied values share the mean of their
    ranks (scipy.stats.rankdata's default, method="average")."""
    v = plain_array(values).ravel()
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    starts_group = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group = np.cumsum(starts_group) - 1  # the group of each sorted position
    first = np.flatnonzero(starts_group)  # 0-based first position of each group
    end = np.r_[first[1:], v.size]  # one past its last position
    mean_rank = (first + 1 + end) / 2  # the mean of ranks first+1 ... end
    ranks = np.empty(v.size)
    ranks[order] = mean_rank[group]
    return ranks


def spearman_rank_correlation(a, b) -> float:
    """Spearman's rho of two maps: the Pearson correlation of their average ranks.

    Adebayo et al. 2018 compare a map with the map after randomising the
    model's weights (they report it with and without absolute values: pass
    np.abs(a) for the latter). The maps are flattened. A constant map has no
    ranking: rho is then 0 here (scipy.stats.spearmanr returns NaN).
    """
    a, b = _pair(a, b)
    if a.size < 2:
        raise ValueError(f"a rank correlation needs at least 2 values; got {a.size}")
    ra, rb = average_ranks(a), average_ranks(b)
    da, db = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt(np.sum(da**2) * np.sum(db**2))
    return float(np.sum(da * db) / denominator) if denominator > 0 else 0.0


def ssim(a, b, data_range: float = 1.0, win_size: int = 7) -> float:
    """Structural similarity of two maps (Wang et al. 2004, IEEE TIP, eq. 13 and 17).

    For every win_size x win_size window lying fully inside the image:
        S = (2 mu_a mu_b + C1)(2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))
    with C1 = (0.01 R)^2, C2 = (0.03 R)^2, R = data_range, and the SAMPLE
    (co)variances (divided by win_size^2 - 1); the result is the mean of S.
    This is skimage.metrics.structural_similarity's default (uniform 7 x 7
    window, K1 = 0.01, K2 = 0.03, use_sample_covariance=True): skimage computes S
    at every pixel with padding, then averages only the pixels at least
    (win_size-1)/2 from the border, which are exactly these windows. Wang et
    al.'s own version uses an 11 x 11 Gaussian window (sigma 1.5). C1, C2 > 0, so
    constant maps give a number, never NaN.
    """
    a, b = _pair(a, b)
    win_size = check_positive_int(win_size, "win_size")
    if a.ndim != 2 or min(a.shape) < win_size:
        raise ValueError(f"ssim needs two 2-D maps of at least {win_size} x {win_size} pixels; got shape {a.shape}")
    if not np.isscalar(data_range) or not data_range > 0:
        raise ValueError(f"data_range must be > 0 (the value range of the maps, 1 for [0, 1]); got {data_range!r}")
    C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    wa = np.lib.stride_tricks.sliding_window_view(a, (win_size, win_size))  # (H', W', win, win)
    wb = np.lib.stride_tricks.sliding_window_view(b, (win_size, win_size))
    mu_a, mu_b = wa.mean(axis=(2, 3)), wb.mean(axis=(2, 3))
    da, db = wa - mu_a[..., None, None], wb - mu_b[..., None, None]
    n = win_size * win_size
    var_a, var_b = (da**2).sum(axis=(2, 3)) / (n - 1), (db**2).sum(axis=(2, 3)) / (n - 1)
    cov_ab = (da * db).sum(axis=(2, 3)) / (n - 1)
    S = ((2 * mu_a * mu_b + C1) * (2 * cov_ab + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return float(S.mean())
