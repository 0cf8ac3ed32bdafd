"""Null distributions of the drift tests, in numpy alone: two-sample KS and chi-square.

The two-sample Kolmogorov-Smirnov p-value follows scipy's ``ks_2samp(method="auto")``
choice: the exact distribution of the statistic (Hodges 1958; the 1 - p recursion of
Viehmann 2021) when both samples hold at most ``KS_EXACT_MAX_N`` values, otherwise the
one-sample Kolmogorov distribution ``Pr(D_n >= d)`` at ``n = round(n1*n2/(n1+n2))``,
computed by the algorithm Simard and L'Ecuyer (2011) recommend for each region of (n, d):
Ruben-Gambino closed forms at the ends, the Durbin matrix (Marsaglia, Tsang, Wang 2003),
Pomeranz's recursion (1974), the Pelz-Good series (1976), and twice the one-sided Smirnov
tail (Birnbaum-Tingey) where that is exact to double precision. The regions are the ones
scipy's ``kstwo`` uses, so the p-values agree with scipy to ~1e-15 (tests hold them to 1e-12).

The chi-square survival function is the regularised upper incomplete gamma function
Q(dof/2, x/2), by its series below a+1 and by Lentz's continued fraction above.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KS_EXACT_MAX_N = 10_000  # scipy's MAX_AUTO_N: 'auto' is exact when both samples are at most this long
_SCALE_EXPONENT = 128
_SCALE_UP = math.ldexp(1.0, _SCALE_EXPONENT)
_SCALE_DOWN = math.ldexp(1.0, -_SCALE_EXPONENT)
_LOG_2PI = math.log(2 * math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)
_MIN_LOG = -708.0
# Stirling series of log Gamma: B_{2j} / (2j (2j-1)) for j = 1..8
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)


class DistributionError(ValueError):
    """An argument outside the domain of a null distribution."""


# --- two-sample KS, exact ---------------------------------------------------------------

def ks_2samp_exact_sf(n1: int, n2: int, h: int) -> float:
    """Pr(D >= h/lcm(n1, n2)) under H0 for two samples of sizes n1, n2 (two-sided).

    ``h`` is the statistic as an integer multiple of 1/lcm. Returns NaN when the
    recursion leaves [0, 1] (scipy falls back to the asymptotic form then; so do we).
    """
    if n1 < 1 or n2 < 1 or h < 0:
        raise DistributionError("sizes must be positive and h non-negative")
    if h == 0:
        return 1.0
    if n1 == n2:
        return _prob_outside_square(n1, h)
    m, n, g = max(n1, n2), min(n1, n2), math.gcd(n1, n2)
    # Work of the column loop: m columns times the band's width; the diagonal sweep costs a few
    # numpy calls per anti-diagonal. Both give the same bits; take the cheaper.
    if m * min(2 * h // (m // g) + 2, n + 1) <= _DIAGONAL_AFTER * (m + n):
        return _prob_outside_band(n1, n2, g, h)
    return _prob_outside_band_diagonals(m, n, g, h)


def _prob_outside_square(n: int, h: int) -> float:
    """Equal sizes: the reflection-principle series for paths leaving |x - y| < h."""
    total = 0.0
    k = n // h
    while k >= 0:
        ratio = 1.0
        for j in range(h):
            ratio = (n - k * h - j) * ratio / (n + k * h + j + 1)
        total = ratio * (1.0 - total)
        k -= 1
    return 2 * total


def _prob_outside_band(m: int, n: int, g: int, h: int) -> float:
    """Unequal sizes: share of lattice paths (0,0)->(m,n) that leave |x/m - y/n| < h/lcm.

    Column by column, each entry holds 1 - (share of paths to that point that stayed
    inside), which keeps the recursion in [0, 1] and avoids the cancellation of 1 - p.
    """
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    low, high = 0, min(-(-h // mg), n + 1)
    width = high - low
    column = np.ones(min(2 * high + 2, n + 1))
    column[low:high] = 0.0
    values = column.tolist()
    for i in range(1, m + 1):
        last_low, last_width = low, width
        low = min(max((ng * i - h) // mg + 1, 0), n)
        high = min(-(-(ng * i + h) // mg), n + 1)
        if high <= low:
            return 1.0
        value = 0.0 if low == 0 else 1.0
        offset = low - last_low
        for jj in range(high - low):
            j = jj + low
            value = (values[jj + offset] * i + value * j) / (i + j)
            values[jj] = value
        width = high - low
        if last_width > width:
            end = min(last_width, len(values))
            values[width:end] = [1.0] * (end - width)
    return float(values[high - low - 1])


_DIAGONAL_AFTER = 40  # band cells per anti-diagonal above which the vectorised sweep is faster


def _prob_outside_band_diagonals(m: int, n: int, g: int, h: int) -> float:
    """`_prob_outside_band` (scipy's `_compute_outer_prob_inside_method`) computed anti-diagonal by
    anti-diagonal, each one a few numpy operations instead of a Python loop over its cells.

    The cell (i, j) depends on (i-1, j) and (i, j-1), both on the previous anti-diagonal, so every
    cell of one anti-diagonal is computed at once, by the same float operations in the same order
    as scipy's loop, ``(p[i-1, j] * i + p[i, j-1] * j) / (i + j)``: the result is bit for bit the
    column loop's. Cells outside the band (and outside the grid, where they are multiplied by 0)
    hold 1. Requires m > n.
    """
    mg, ng = m // g, n // g
    i = np.arange(m + 1, dtype=np.int64)
    # The band of column i is minj[i] <= j < maxj[i] (the loop's sliding window).
    minj = np.minimum(np.maximum((ng * i - h) // mg + 1, 0), n)
    maxj = np.minimum(-(-(ng * i + h) // mg), n + 1)
    if np.any(maxj <= minj):
        return 1.0
    # On anti-diagonal d (i + j = d) the band holds i0 <= i <= i1, with i + maxj[i] and i + minj[i]
    # both increasing in i.
    upper = i + maxj
    lower = i + minj
    # q[i + 1] holds p(i, d - 1 - i) of the previous anti-diagonal; 1 outside its band.
    q = np.ones(m + 3)
    q[1] = 0.0  # p(0, 0) = 0: the origin is inside the band (h >= 1)
    last0, last1 = 0, 0
    index = i.astype(np.float64)
    for d in range(1, m + n + 1):
        i0 = max(int(np.searchsorted(upper, d, side="right")), d - n, 0)
        i1 = min(int(np.searchsorted(lower, d, side="right")) - 1, d, m)
        if i1 < i0:
            q[last0 + 1: last1 + 2] = 1.0
            last0, last1 = 1, 0
            continue
        steps = index[i0: i1 + 1]
        values = (q[i0: i1 + 1] * steps + q[i0 + 1: i1 + 2] * (d - steps)) / d
        if last0 < i0:
            q[last0 + 1: i0 + 1] = 1.0
        if i1 < last1:
            q[i1 + 2: last1 + 2] = 1.0
        q[i0 + 1: i1 + 2] = values
        last0, last1 = i0, i1
    return float(q[m + 1])


# --- one-sample Kolmogorov distribution (the 'asymp' branch of ks_2samp) ------------------

def kolmogorov_sf(n: int, d: float) -> float:
    """Pr(D_n >= d) for the two-sided one-sample statistic with n observations."""
    if n < 1:
        raise DistributionError("n must be positive")
    if d >= 1.0:
        return 0.0
    if d <= 0.0:
        return 1.0
    t = n * d
    if t <= 1.0:
        if t <= 0.5:
            return 1.0
        if n <= 140:
            cdf = float(np.prod(np.arange(1, n + 1) * (1.0 / n) * (2 * t - 1)))
        else:
            cdf = math.exp(_log_factorial_over_power(n) + n * math.log(2 * t - 1))
        return _clip(1.0 - cdf)
    if t >= n - 1:
        return _clip(2 * (1.0 - d) ** n)
    if d >= 0.5:
        return _clip(2 * smirnov_sf(n, d))
    n_d_squared = t * d
    if n <= 140:
        if n_d_squared <= 0.754693:
            return _clip(1.0 - _durbin_cdf(n, d))
        if n_d_squared <= 4:
            return _clip(1.0 - _pomeranz_cdf(n, d))
        return _clip(2 * smirnov_sf(n, d))
    if n_d_squared >= 370.0:
        return 0.0
    if n_d_squared >= 2.2:
        return _clip(2 * smirnov_sf(n, d))
    if n <= 100_000 and n * d**1.5 <= 1.4:
        cdf = _durbin_cdf(n, d)
    else:
        cdf = _pelz_good_cdf(n, d)
    return _clip(1.0 - cdf)


def _clip(p: float) -> float:
    return min(max(float(p), 0.0), 1.0)


def _log_factorial_over_power(n: int) -> float:
    """log(n! / n**n) by Stirling, with n log n taken out before it can cancel."""
    rn = 1.0 / n
    correction = rn * float(np.polyval(list(reversed(_STIRLING)), rn * rn))
    return math.log(n) / 2 - n + _LOG_2PI / 2 + correction


def _durbin_cdf(n: int, d: float) -> float:
    """Pr(D_n < d) by the Durbin matrix: the k-th diagonal entry of H**n times n!/n**n."""
    k = math.ceil(n * d)
    h = k - n * d
    m = 2 * k - 1
    powers = np.arange(1, m + 1)
    first_column = 1.0 - h**powers
    inverse_factorials = np.empty(m)
    factorial_inverse = 1.0
    for j in range(1, m + 1):
        inverse_factorials[j - 1] = factorial_inverse
        factorial_inverse /= j
        first_column[j - 1] *= factorial_inverse
    corner = max(2 * h - 1.0, 0.0) ** m - 2 * h**m
    first_column[-1] = (1.0 + corner) * factorial_inverse
    matrix = np.zeros((m, m))
    for i in range(1, m):
        matrix[i - 1:, i] = inverse_factorials[: m - i + 1]
    matrix[:, 0] = first_column
    matrix[-1, :] = first_column[::-1]

    result = np.eye(m)
    result_exponent = 0
    matrix_exponent = 0
    remaining = n
    while remaining > 0:
        if remaining % 2:
            result = result @ matrix
            result_exponent += matrix_exponent
        matrix = matrix @ matrix
        matrix_exponent *= 2
        if abs(matrix[k - 1, k - 1]) > _SCALE_UP:
            matrix /= _SCALE_UP
            matrix_exponent += _SCALE_EXPONENT
        remaining //= 2
    p = float(result[k - 1, k - 1])
    for i in range(1, n + 1):
        p = i * p / n
        if abs(p) < _SCALE_DOWN:
            p *= _SCALE_UP
            result_exponent -= _SCALE_EXPONENT
    if result_exponent:
        p = math.ldexp(p, result_exponent)
    return _clip(p)


def _pomeranz_bounds(i: int, n: int, whole: int, has_fraction: int, rounds_up: int) -> tuple[int, int]:
    if i == 0:
        j1, j2 = -whole - has_fraction - 1, whole + has_fraction - 1
    else:
        half, odd = divmod(i + 1, 2)
        if odd == 0:
            if half == n + 1:
                j1, j2 = n - whole - has_fraction - 1, n + whole + has_fraction - 1
            else:
                j1, j2 = half - 1 - whole - rounds_up - 1, half + whole - 1 + has_fraction - 1
        else:
            j1, j2 = half - 1 - whole - 1, half + whole + rounds_up - 1
    return max(j1 + 2, 0), min(j2, n)


def _pomeranz_cdf(n: int, d: float) -> float:
    """Pr(D_n < d) by Pomeranz's recursion: rows convolved with truncated Poisson weights."""
    t = n * d
    whole = math.floor(t)
    fraction = t - whole
    g = min(fraction, 1.0 - fraction)
    has_fraction = 1 if fraction > 0 else 0
    rounds_up = 1 if fraction > 0.5 else 0
    size = 2 * (whole + 1)
    g_weights, two_g_weights, rest_weights = np.empty(size), np.empty(size), np.empty(size)
    g_weights[0] = two_g_weights[0] = rest_weights[0] = 1.0
    for power in range(1, size):
        g_weights[power] = g_weights[power - 1] * (g / n) / power
        two_g_weights[power] = two_g_weights[power - 1] * (2 * g / n) / power
        rest_weights[power] = rest_weights[power - 1] * ((1 - 2 * g) / n) / power
    previous, current = np.zeros(size), np.zeros(size)
    current[0] = 1
    previous_start = current_start = 0
    exponent = 0
    j1, _ = _pomeranz_bounds(0, n, whole, has_fraction, rounds_up)
    for i in range(1, 2 * n + 2):
        k1 = j1
        previous, current = current, previous
        previous_start, current_start = current_start, previous_start
        current.fill(0.0)
        j1, j2 = _pomeranz_bounds(i, n, whole, has_fraction, rounds_up)
        if i == 1 or i == 2 * n + 1:
            weights = g_weights
        else:
            weights = two_g_weights if i % 2 else rest_weights
        span = j2 - k1 + 1
        if span > 0:
            convolved = np.convolve(previous[k1 - previous_start:k1 - previous_start + span], weights[:span])
            length = j2 - j1 + 1
            current[:length] = convolved[j1 - k1:j1 - k1 + length]
            if 0 < np.max(current) < _SCALE_DOWN:
                current *= _SCALE_UP
                exponent -= _SCALE_EXPONENT
            current_start = previous_start + j1 - k1
    answer = float(current[n - current_start])
    for factor in range(1, n + 1):
        if abs(answer) > _SCALE_UP:
            answer *= _SCALE_DOWN
            exponent += _SCALE_EXPONENT
        answer *= factor
    if exponent:
        answer = math.ldexp(answer, exponent)
    return _clip(answer)


def _pelz_good_cdf(n: int, d: float) -> float:
    """Pr(D_n < d) by the Pelz-Good expansion in 1/sqrt(n), theta-transformed for small z."""
    z = math.sqrt(n) * d
    z2, z3, z4, z6 = z**2, z**3, z**4, z**6
    q_log = -(math.pi**2) / 8 / z2
    if q_log < _MIN_LOG:
        return 0.0
    q = math.exp(q_log)
    pi2, pi4, pi6 = math.pi**2, math.pi**4, math.pi**6
    k1a, k1b = -z2, pi2 / 4
    k2a, k2b, k2c = 6 * z6 + 2 * z4, (2 * z4 - 5 * z2) * pi2 / 4, pi4 * (1 - 2 * z2) / 16
    k3d = pi6 * (5 - 30 * z2) / 64
    k3c = pi4 * (-60 * z2 + 212 * z4) / 16
    k3b = pi2 * (135 * z4 - 96 * z6) / 4
    k3a = -30 * z6 - 90 * z**8
    terms = np.zeros(4)
    last_k = math.ceil(16 * z / math.pi)
    for k in range(last_k, 0, -1):
        odd = 2 * k - 1
        o2, o4, o6 = odd**2, odd**4, odd**6
        terms *= q ** (8 * k)
        terms += np.array([1.0, k1a + k1b * o2, k2a + k2b * o2 + k2c * o4, k3a + k3b * o2 + k3c * o4 + k3d * o6])
    terms *= q
    terms *= _SQRT_2PI
    terms /= np.array([z, 6 * z4, 72 * z**7, 6480 * z**10])
    q = math.exp(-pi2 / 2 / z2)
    ks = np.arange(last_k, 0, -1)
    k_squared = ks**2
    root3z = math.sqrt(3) * z
    k_pi = np.pi * ks
    q_powers = q**k_squared
    terms[2] += float(np.sum(k_squared * q_powers)) * pi2 * _SQRT_2PI / (-36 * z3)
    terms[3] += float(np.sum((root3z + k_pi) * (root3z - k_pi) * k_squared * q_powers)) * pi2 * _SQRT_2PI / (216 * z6)
    terms /= np.power(float(n), np.arange(4) / 2.0)
    return float(sum(terms))


def smirnov_sf(n: int, d: float) -> float:
    """Pr(D+_n >= d), the one-sided Smirnov tail, by the Birnbaum-Tingey sum.

    Each term C(n,v) d (d+v/n)^(v-1) (1-d-v/n)^(n-v) is taken in logs with the n log n
    parts cancelled analytically (Stirling differences and log1p), so terms stay accurate
    to ~1e-13 relative for n in the millions.
    """
    if n < 1 or not 0.0 <= d <= 1.0:
        raise DistributionError("smirnov_sf needs n >= 1 and 0 <= d <= 1")
    if d == 0.0:
        return 1.0
    if d == 1.0:
        return 0.0
    last = math.floor(n * (1.0 - d))
    nd = n * d
    terms = [math.exp(n * math.log1p(-d))] if last >= 0 else []
    if last >= 1:
        v = np.arange(1, last + 1, dtype=np.float64)
        rest = n - v
        inside = rest > nd
        v, rest = v[inside], rest[inside]
        log_terms = (
            _log_binomial(n, v, rest)
            + math.log(d)
            + v * np.log1p(nd / v) - np.log(d + v / n)
            + rest * np.log1p(-nd / rest)
        )
        # Terms more than e^-60 below the largest cannot change a double sum.
        kept = log_terms[log_terms > max(float(log_terms.max(initial=_MIN_LOG)) - 60.0, _MIN_LOG)]
        # numpy's pairwise sum of the terms in ascending order: relative error ~1e-16 * log2(count)
        terms.append(float(np.sum(np.sort(np.exp(kept)))))
    return _clip(math.fsum(terms))


def _log_binomial(n: int, v: np.ndarray, rest: np.ndarray) -> Any:
    """log C(n, v) + v log(v/n) + rest log(rest/n): what is left of log C(n, v) once the
    x log x parts are cancelled against the powers in the Smirnov term (all small)."""
    return (0.5 * np.log(n / (2 * np.pi * v * rest))
            + _stirling_remainder(np.array([float(n)]))[0] - _stirling_remainder(v) - _stirling_remainder(rest))


def _stirling_remainder(x: np.ndarray) -> np.ndarray:
    """log(x!) - (x log x - x + log(2 pi x)/2), exact for small x, by the series for x >= 10."""
    out = np.empty_like(x)
    small = x < 10
    for index in np.flatnonzero(small):
        value = float(x[index])
        out[index] = math.lgamma(value + 1) - (value * math.log(value) - value + 0.5 * math.log(2 * math.pi * value))
    large = x[~small]
    inverse = 1.0 / large
    inverse_squared = inverse * inverse
    series = np.zeros_like(large)
    for coefficient in reversed(_STIRLING):
        series = series * inverse_squared + coefficient
    out[~small] = series * inverse
    return out


# --- chi-square ---------------------------------------------------------------------------

def chi2_sf(statistic: float, dof: int) -> float:
    """Pr(X >= statistic) for X ~ chi-square(dof): Q(dof/2, statistic/2)."""
    if dof < 1:
        raise DistributionError("dof must be >= 1")
    if statistic <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    log_prefactor = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return _clip(1.0 - total * math.exp(log_prefactor))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    dd = 1.0 / b
    fraction = dd
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        dd = an * dd + b
        dd = tiny if abs(dd) < tiny else dd
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        dd = 1.0 / dd
        delta = dd * c
        fraction *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return _clip(math.exp(log_prefactor) * fraction)
