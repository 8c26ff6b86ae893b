"""Reliability of questionnaire scores: Cronbach's alpha with its Feldt interval, omega total.

:func:`cronbach_alpha`, :func:`omega_total` and :func:`reliability_table` estimate internal
consistency (checked against ``psych::alpha`` and ``psych::omega`` on ``bfi``).

Multilevel (within- and between-client) reliability (Geldhof, Preacher & Zyphur, 2014) is not
implemented yet: :func:`reliability_table` reports single-level coefficients only.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance_analysis.errors import AllianceDataError, AllianceParamsError, ConvergenceWarning
from alliance_analysis.instruments import Instrument
from alliance_analysis.data.scoring import recoded_items

#: Columns of :func:`reliability_table`.
RELIABILITY_COLUMNS = (
    "instrument", "scale", "occasion", "n", "k", "alpha", "ci_low", "ci_high", "omega_total",
    "note",
)
_POOLED_NOTE = "pools repeated measures of the same clients: rows are not independent"
_PSI_LOWER = 0.005  # lower bound of a uniqueness, as in R's stats::factanal



@dataclass(frozen=True)
class AlphaResult:
    """Cronbach's alpha with its Feldt confidence interval.

    Attributes
    ----------
    alpha : float
        Raw alpha, from the item covariances.
    std_alpha : float
        Standardized alpha, from the item correlations.
    ci_low, ci_high : float
        Feldt confidence interval of the raw alpha.
    n : int
        Number of cases (rows) used.
    k : int
        Number of items.
    average_r : float
        Mean inter-item correlation.
    """

    alpha: float
    std_alpha: float
    ci_low: float
    ci_high: float
    n: int
    k: int
    average_r: float


def cronbach_alpha(
    items: pd.DataFrame, ci: float = 0.95, missing: Literal["listwise", "pairwise"] = "listwise"
) -> AlphaResult:
    """Cronbach's alpha, standardized alpha and the Feldt confidence interval.

    Parameters
    ----------
    items : pandas.DataFrame
        One column per item (at least 2), one row per case; reverse-keyed items already
        recoded.
    ci : float, default 0.95
        Confidence level of the interval, in (0, 1).
    missing : {"listwise", "pairwise"}, default "listwise"
        ``"listwise"``: only rows with every item answered (complete cases); ``n`` is their
        number. ``"pairwise"``: each covariance from the rows where both items are answered,
        as psych::alpha does by default; ``n`` is then the number of rows with at least one
        item answered, which is psych's ``n.obs`` (``nrow(x)``) unless some rows are empty.

    Returns
    -------
    AlphaResult
        ``alpha, std_alpha, ci_low, ci_high, n, k, average_r``.

    Raises
    ------
    AllianceDataError
        If there are fewer than 2 items or 2 cases, or an item does not vary.

    Notes
    -----
    With :math:`k` items, item covariance matrix :math:`C` and correlation matrix
    :math:`R = \\mathrm{cov2cor}(C)`:

    .. math::

        \\alpha = \\frac{k}{k-1}\\left(1 - \\frac{\\operatorname{tr} C}{\\mathbf 1' C \\mathbf 1}
        \\right), \\qquad
        \\bar r = \\frac{\\mathbf 1' R \\mathbf 1 - k}{k(k-1)}, \\qquad
        \\alpha_{std} = \\frac{k \\bar r}{1 + (k-1)\\bar r}.

    The Feldt (1965) interval treats :math:`(1-\\alpha)/(1-\\hat\\alpha)` as
    :math:`F(n-1, (n-1)(k-1))`-distributed; with :math:`F_q` its quantiles and
    :math:`p = 1 - ci`,

    .. math::

        \\text{ci\\_low} = 1 - (1-\\hat\\alpha) F_{1-p/2}, \\qquad
        \\text{ci\\_high} = 1 - (1-\\hat\\alpha) F_{p/2},

    as in psych's ``alpha.ci`` (reported by ``psych::alpha`` as "Feldt"). Checked against
    psych 2.2.9 on the bfi neuroticism items (``tests/reference/psych_alpha.json``): both
    missing-data modes agree to 1e-10.

    References
    ----------
    .. [1] Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests.
       Psychometrika, 16(3), 297-334.
    .. [2] Feldt, L. S. (1965). The approximate sampling distribution of Kuder-Richardson
       reliability coefficient twenty. Psychometrika, 30(3), 357-370.
    .. [3] Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for
       coefficient alpha. Applied Psychological Measurement, 11(1), 93-103.
    .. [4] Revelle, W. psych: Procedures for psychological, psychometric, and personality
       research (R package, function ``alpha``).
    """
    if not 0 < ci < 1:
        raise AllianceParamsError(f"ci must be a confidence level in (0, 1); got {ci!r}.")
    if missing not in ("listwise", "pairwise"):
        raise AllianceParamsError(f"missing must be 'listwise' or 'pairwise'; got {missing!r}.")
    data = _complete_cases(items) if missing == "listwise" else _answered_rows(items)
    _raise_if(_estimability_problem(data, min_items=2, missing=missing), "Cronbach's alpha",
              items)
    covariance = _covariance(data, missing)
    n, k = data.shape
    alpha = k / (k - 1) * (1 - np.trace(covariance) / covariance.sum())
    sd = np.sqrt(np.diag(covariance))
    average_r = (float((covariance / np.outer(sd, sd)).sum()) - k) / (k * (k - 1))
    df1, df2 = n - 1, (n - 1) * (k - 1)
    p = 1 - ci
    return AlphaResult(
        alpha=float(alpha),
        std_alpha=k * average_r / (1 + (k - 1) * average_r),
        ci_low=float(1 - (1 - alpha) * stats.f.ppf(1 - p / 2, df1, df2)),
        ci_high=float(1 - (1 - alpha) * stats.f.ppf(p / 2, df1, df2)),
        n=int(n),
        k=int(k),
        average_r=average_r,
    )


def omega_total(items: pd.DataFrame) -> float:
    """McDonald's omega total from a one-factor maximum-likelihood factor analysis.

    Parameters
    ----------
    items : pandas.DataFrame
        One column per item (at least 3), one row per case; reverse-keyed items already
        recoded. Only complete cases are used.

    Returns
    -------
    float
        Omega total of the sum of the standardized items.

    Raises
    ------
    AllianceDataError
        If there are fewer than 3 items, an item does not vary, or the item correlation
        matrix is singular (e.g. no more complete cases than items).

    Warns
    -----
    ConvergenceWarning
        If the optimizer stops without converging, or a uniqueness reaches its lower bound
        (a Heywood case), which makes the value doubtful.

    Notes
    -----
    The one-factor model :math:`R = \\lambda\\lambda' + \\Psi` is fitted to the complete-case
    correlation matrix :math:`R` by maximum likelihood, minimising
    :math:`\\log|\\Sigma| + \\operatorname{tr}(R\\Sigma^{-1}) - \\log|R| - k` over the
    uniquenesses :math:`\\psi_j \\ge 0.005`, with the loadings concentrated out as in R's
    ``stats::factanal`` (Joreskog, 1967; Lawley & Maxwell, 1971). Then

    .. math::

        \\omega_t = \\frac{(\\sum_j \\lambda_j)^2}{(\\sum_j \\lambda_j)^2 + \\sum_j \\psi_j}.

    ML is scale-invariant, so these standardized loadings equal those of a one-factor ML CFA
    of the covariances (lavaan) divided by the item SDs; the test checks that against a lavaan
    fixture. This is the omega of the *standardized* item sum; lavaan-based omega of the raw
    sum (unstandardized loadings) differs slightly when item variances differ. psych::omega
    uses a minres fit and :math:`1 - \\sum\\psi / \\mathbf 1' R \\mathbf 1`, which also differs
    slightly.

    References
    ----------
    .. [1] McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
    .. [2] Joreskog, K. G. (1967). Some contributions to maximum likelihood factor analysis.
       Psychometrika, 32(4), 443-482.
    .. [3] Lawley, D. N., & Maxwell, A. E. (1971). Factor analysis as a statistical method
       (2nd ed.). Butterworths.
    """
    data = _complete_cases(items)
    _raise_if(_omega_problem(data), "Omega total", items)
    correlation = np.corrcoef(data.to_numpy(), rowvar=False)
    loadings, psi = _one_factor_ml(correlation, list(items.columns))
    common = loadings.sum() ** 2
    return float(common / (common + psi.sum()))


def _one_factor_ml(correlation: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Loadings and uniquenesses of a one-factor ML factor analysis (factanal's algorithm)."""
    k = correlation.shape[0]
    start = (1 - 0.5 / k) / np.diag(np.linalg.inv(correlation))
    fit = optimize.minimize(
        _ml_discrepancy, start, args=(correlation,), jac=_ml_gradient, method="L-BFGS-B",
        bounds=[(_PSI_LOWER, 1.0)] * k, options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 1000},
    )
    if not fit.success or np.any(fit.x <= _PSI_LOWER * (1 + 1e-6)):
        warnings.warn(
            f"One-factor ML fit of items {names} is doubtful ({fit.message}; uniquenesses "
            f"{np.round(fit.x, 4).tolist()}). Inspect the correlations: "
            f"items.corr().round(2)",
            ConvergenceWarning, stacklevel=3,
        )
    loadings = _ml_loadings(fit.x, correlation)
    return loadings, fit.x


def _scaled_eigen(psi: np.ndarray, correlation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and vectors of Psi^-1/2 R Psi^-1/2."""
    scale = 1 / np.sqrt(psi)
    return np.linalg.eigh(correlation * np.outer(scale, scale))


def _ml_loadings(psi: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """ML loadings given the uniquenesses, signed so that they sum to a positive number."""
    values, vectors = _scaled_eigen(psi, correlation)
    loadings = np.sqrt(psi) * vectors[:, -1] * np.sqrt(max(values[-1] - 1, 0.0))
    return loadings if loadings.sum() >= 0 else -loadings


def _ml_discrepancy(psi: np.ndarray, correlation: np.ndarray) -> float:
    """ML discrepancy with the loadings concentrated out (factanal's FAfn, one factor)."""
    values = _scaled_eigen(psi, correlation)[0][:-1]
    return float(-(np.sum(np.log(values) - values) - 1 + correlation.shape[0]))


def _ml_gradient(psi: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """Gradient of :func:`_ml_discrepancy` in the uniquenesses (factanal's FAgr)."""
    loadings = _ml_loadings(psi, correlation)
    return (loadings**2 + psi - np.diag(correlation)) / psi**2


def _complete_cases(items: pd.DataFrame) -> pd.DataFrame:
    """Rows with every item answered, as floats."""
    return items.dropna().astype("float64")


def _covariance(data: pd.DataFrame, missing: Literal["listwise", "pairwise"]) -> np.ndarray:
    """Item covariances of complete cases, or pairwise from rows answering both items."""
    return data.cov(min_periods=2 if missing == "pairwise" else None).to_numpy()


def _answered_rows(items: pd.DataFrame) -> pd.DataFrame:
    """Rows with at least one item answered, as floats."""
    return items.dropna(how="all").astype("float64")


def _estimability_problem(
    data: pd.DataFrame, min_items: int, missing: Literal["listwise", "pairwise"] = "listwise"
) -> str:
    """Why a reliability coefficient cannot be estimated from `data` ("" if it can)."""
    n, k = data.shape
    if k < min_items:
        return f"needs at least {min_items} items; got {k}"
    if n < 2:
        return f"needs at least 2 cases; got {n}"
    covariance = _covariance(data, missing)
    if not np.all(np.isfinite(covariance)):
        return "some pairs of items are answered together fewer than twice"
    constant = [c for c, v in zip(data.columns, np.diag(covariance)) if not v > 0]
    if constant:
        return f"items {constant} do not vary among the {n} cases"
    return ""


def _omega_problem(data: pd.DataFrame) -> str:
    """Why omega total cannot be estimated from complete cases `data` ("" if it can)."""
    problem = _estimability_problem(data, min_items=3)
    if problem:
        return problem
    if np.linalg.eigvalsh(np.corrcoef(data.to_numpy(), rowvar=False))[0] <= 1e-10:
        return (f"the item correlation matrix of the {len(data)} complete cases is singular "
                f"(too few cases, or an item is a linear function of others)")
    return ""


def _raise_if(problem: str, what: str, items: pd.DataFrame) -> None:
    """Raise AllianceDataError if there is a `problem` estimating `what` from `items`."""
    if problem:
        raise AllianceDataError(
            f"{what} of items {list(items.columns)} cannot be estimated: {problem}."
        )


def reliability_table(
    sessions: pd.DataFrame, instruments: Sequence[Instrument], baseline_session: int = 1
) -> pd.DataFrame:
    """Internal consistency of every instrument's total and subscales, at baseline and pooled.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The session table with a ``session`` column and each instrument's item columns.
    instruments : sequence of Instrument
        The questionnaires to assess; reverse-keyed items are recoded first.
    baseline_session : int, default 1
        The session number whose rows form the "baseline" occasion.

    Returns
    -------
    pandas.DataFrame
        One row per instrument, scale and occasion, with columns

        - ``instrument``: the instrument key,
        - ``scale``: ``"total"`` or the subscale name,
        - ``occasion``: ``"baseline"`` (rows with ``session == baseline_session``: one
          observation per client) or ``"all sessions"`` (every row),
        - ``n``: complete cases used; ``k``: items,
        - ``alpha``, ``ci_low``, ``ci_high``: raw Cronbach's alpha and its 95% Feldt interval
          (:func:`cronbach_alpha`, listwise),
        - ``omega_total``: :func:`omega_total` (missing for fewer than 3 items),
        - ``note``: why a value is missing, and for "all sessions" that the rows pool repeated
          measures of the same clients, so they are not independent and the interval is too
          narrow. Multilevel (within/between-client) coefficients are not computed.

    Raises
    ------
    AllianceDataError
        If ``session`` or an item column is missing.

    References
    ----------
    .. [1] Geldhof, G. J., Preacher, K. J., & Zyphur, M. J. (2014). Reliability estimation in
       a multilevel confirmatory factor analysis framework. Psychological Methods, 19(1),
       72-91. (why pooled single-level coefficients mix within- and between-client variance)
    """
    if "session" not in sessions.columns:
        raise AllianceDataError("The session table has no 'session' column.")
    occasions = {"baseline": sessions["session"] == baseline_session,
                 "all sessions": pd.Series(True, index=sessions.index)}
    rows = []
    for instrument in instruments:
        absent = [c for c in instrument.items() if c not in sessions.columns]
        if absent:
            raise AllianceDataError(
                f"Instrument {instrument.key!r} needs item columns {absent}, which the session "
                f"table does not have."
            )
        items = recoded_items(sessions, instrument)
        scales = {"total": instrument.items()}
        scales |= {name: instrument.subscale_items(name) for name in instrument.subscales}
        for scale, names in scales.items():
            for occasion, rows_in in occasions.items():
                rows.append({"instrument": instrument.key, "scale": scale, "occasion": occasion,
                             **_reliability_row(items.loc[rows_in, names], occasion)})
    return pd.DataFrame(rows, columns=list(RELIABILITY_COLUMNS))


def _reliability_row(items: pd.DataFrame, occasion: str) -> dict:
    """n, k, alpha, ci_low, ci_high, omega_total and note for one scale on one occasion."""
    data = _complete_cases(items)
    notes = [_POOLED_NOTE] if occasion == "all sessions" else []
    row = {"n": len(data), "k": items.shape[1], "alpha": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "omega_total": np.nan}
    problem = _estimability_problem(data, min_items=2)
    if problem:
        notes.insert(0, f"alpha and omega: {problem}")
    else:
        alpha = cronbach_alpha(data)
        row |= {"alpha": alpha.alpha, "ci_low": alpha.ci_low, "ci_high": alpha.ci_high}
        omega_problem = _omega_problem(data)
        if omega_problem:
            notes.insert(0, f"omega: {omega_problem}")
        else:
            row["omega_total"] = omega_total(data)
    return row | {"note": "; ".join(notes)}
