"""Float64 math whose bits are the same on every CPU, for the range searches that pick a minimum.

numpy's ``np.log`` takes an AVX-512 path on CPUs that have it and the C library elsewhere; the two differ in
the last bit for some inputs, and a search whose candidates tie (the KL search ties often on sparse histograms)
would then pick another range on another machine. The log here uses only IEEE-754 operations that round
exactly (frexp, +, -, x, /), in a fixed order, so it gives the same bits wherever numpy runs.
"""

from __future__ import annotations

import numpy as np

LN2_HI = 6.93147180369123816490e-01  # ln 2 split as in fdlibm: e * LN2_HI is exact for |e| < 2**11
LN2_LO = 1.90821492927058770002e-10
SQRT_HALF = 0.70710678118654752440
# log(m) = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...), z = (m-1)/(m+1); |z| <= 0.1716 for m in [sqrt(1/2), sqrt(2)):
# 12 terms leave a truncation error below 1e-19 relative
_SERIES = tuple(1.0 / (2 * k + 1) for k in range(12))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural log of float64 values, within 3 ulp of the exact value; log(0) = -inf, log(inf) = inf, NaN for x < 0."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0, negative, inf and NaN inputs: replaced below
        return np.where(x > 0, np.where(np.isinf(x), np.inf, _log_positive(x)), np.where(x == 0, -np.inf, np.nan))


def _log_positive(x: np.ndarray) -> np.ndarray:
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2**exponent, 0.5 <= mantissa < 1 (exact)
    low = mantissa < SQRT_HALF
    mantissa = np.where(low, mantissa * 2.0, mantissa)  # now in [sqrt(1/2), sqrt(2)) (exact)
    e = (exponent - low).astype(np.float64)
    z = (mantissa - 1.0) / (mantissa + 1.0)
    z2 = z * z
    series = np.full_like(z, _SERIES[-1])
    for coefficient in reversed(_SERIES[:-1]):
        series = series * z2 + coefficient
    return e * LN2_HI + (e * LN2_LO + 2.0 * z * series)
