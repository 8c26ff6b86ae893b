"""The data of a nested mixed model: validation, missing values, design matrices, sorting.

Used by :func:`alliance_analysis.multilevel.engine.nested.fit_nested`: :func:`build_design` checks the table
once (columns present and numeric, clients nested in therapists, enough observations for the
random effects, fixed effects not collinear), drops rows with a missing model variable and
counts them, and lays the data out as arrays sorted by therapist and client, as the
sufficient statistics of :mod:`alliance_analysis.multilevel.engine.deviance` need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError, NotEstimableError

INTERCEPT = "(Intercept)"
STATSMODELS_ROUTE = (
    "Fit it with statsmodels instead (multilevel parameters: engine: statsmodels), e.g. "
    "statsmodels.formula.api.mixedlm(formula, data, groups=np.ones(len(data)), re_formula='0', "
    "vc_formula={'client': '0 + C(client_id)', 'therapist': '0 + C(therapist_id)'}) for "
    "crossed client and therapist intercepts")


@dataclass(frozen=True)
class Design:
    """The model's data as arrays, rows sorted by therapist and client.

    Attributes
    ----------
    x, zc, zt, y
        Fixed-effects, client and therapist random-effects design, and outcome.
    fixed_names, client_names, therapist_names
        Term names of the columns of ``x``, ``zc`` and ``zt`` (``(Intercept)`` for ``1``).
    client_starts, therapist_row_starts, therapist_client_starts
        First row of each client, first row and first client of each therapist.
    client_ids, therapist_ids
        The IDs of the clients and therapists in that order (as text).
    dropped
        Rows dropped for a missing value, by column (a row counts once, for its first
        missing column in model order).
    rows
        The position in the data of each row, in the arrays' order (to lay out a new outcome
        the same way, as in :class:`alliance_analysis.multilevel.engine.nested.NestedRefit`).
    """

    x: np.ndarray
    zc: np.ndarray
    zt: np.ndarray
    y: np.ndarray
    fixed_names: tuple[str, ...]
    client_names: tuple[str, ...]
    therapist_names: tuple[str, ...]
    client_starts: np.ndarray
    therapist_row_starts: np.ndarray
    therapist_client_starts: np.ndarray
    client_ids: np.ndarray
    therapist_ids: np.ndarray
    dropped: dict[str, int]
    rows: np.ndarray

    @property
    def n_clients(self) -> int:
        return self.client_starts.size

    @property
    def n_therapists(self) -> int:
        return self.therapist_row_starts.size if self.therapist_names else 0


def build_design(data: pd.DataFrame, outcome: str, fixed: Sequence[str],
                 random: Sequence[str], client: str, therapist: str | None,
                 therapist_random: Sequence[str], intercept: bool) -> Design:
    """Validate the data and lay it out as sorted arrays.

    See :func:`alliance_analysis.multilevel.engine.nested.fit_nested` for the arguments and the checks.
    """
    fixed_terms = _terms("fixed", ["1"] if intercept else [], fixed)
    client_terms = _terms("random", [], random)
    therapist_terms = _terms("therapist_random", [], therapist_random) if therapist else []
    if therapist and not therapist_terms:
        raise AllianceDataError("fit_nested: therapist_random is empty; give e.g. ('1',) or "
                                "drop the therapist level (therapist=None)")
    ids = [client] + ([therapist] if therapist else [])
    variables = _variables([outcome, *fixed_terms, *client_terms, *therapist_terms])
    _require(data, ids + variables)
    frame, dropped, kept = _complete(data, [*variables, *ids])
    client_code = pd.factorize(frame[client])[0]
    therapist_code = pd.factorize(frame[therapist])[0] if therapist else np.zeros_like(client_code)
    _check_nested(frame, client, therapist, client_code, therapist_code)
    # sort the numeric arrays, not the frame: no copy of the ID columns' text
    order = np.lexsort((client_code, therapist_code))
    client_code, therapist_code = client_code[order], therapist_code[order]
    client_starts, therapist_starts = _starts(client_code), _starts(therapist_code)
    design = Design(
        x=_columns(frame, fixed_terms, order), zc=_columns(frame, client_terms, order),
        zt=_columns(frame, therapist_terms, order), y=_numeric(frame, outcome)[order],
        fixed_names=tuple(fixed_terms), client_names=tuple(client_terms),
        therapist_names=tuple(therapist_terms), client_starts=client_starts,
        therapist_row_starts=therapist_starts,
        therapist_client_starts=_starts(therapist_code[client_starts]),
        client_ids=_ids(frame[client], order[client_starts]),
        therapist_ids=(_ids(frame[therapist], order[therapist_starts]) if therapist
                       else np.array([], dtype=str)),
        dropped=dropped, rows=kept[order])
    _check_identifiable(design, client, therapist)
    return design


def _terms(argument: str, implied: Sequence[str], given: Sequence[str]) -> list[str]:
    """The term names of one argument, checked: not empty (fixed, random), no duplicates."""
    terms = [_term(t) for t in [*implied, *given]]
    if argument == "random" and not terms:
        raise AllianceDataError("fit_nested: random is empty; give at least one client random "
                                "effect, e.g. random=('1',) for a random intercept")
    if argument == "fixed" and not terms:
        raise AllianceDataError("fit_nested: no fixed effect (fixed is empty and "
                                "intercept=False); give at least one")
    repeated = sorted({t for t in terms if terms.count(t) > 1})
    if repeated:
        raise AllianceDataError(f"fit_nested: {argument} lists {repeated} twice (the fixed "
                                "intercept is included unless intercept=False)")
    return terms


def _term(text: str) -> str:
    """A term's name: ``(Intercept)`` for ``1``, products without spaces."""
    text = str(text).strip()
    return INTERCEPT if text == "1" else ":".join(p.strip() for p in text.split(":"))


def _variables(terms: Sequence[str]) -> list[str]:
    """The distinct columns the terms use, in order of appearance."""
    names = [part for term in terms if term != INTERCEPT for part in term.split(":")]
    return list(dict.fromkeys(names))


def _require(data: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise AllianceDataError(f"fit_nested needs the column(s) {missing}, which the data "
                                f"lack (it has {list(data.columns)[:15]})")


def _complete(data: pd.DataFrame, columns: Sequence[str]
              ) -> tuple[pd.DataFrame, dict[str, int], np.ndarray]:
    """Rows with every model variable present; drop counts; the kept rows' positions."""
    frame = data[list(dict.fromkeys(columns))]  # a new frame: the data are not changed
    missing = frame.isna().to_numpy()
    first_missing = np.argmax(missing, axis=1)
    has_missing = missing.any(axis=1)
    dropped = {column: int(np.sum(has_missing & (first_missing == j)))
               for j, column in enumerate(frame.columns)}
    kept = np.flatnonzero(~has_missing)
    if has_missing.any():
        frame = frame.loc[~has_missing]
    if frame.empty:
        raise NotEstimableError(f"fit_nested: no row has every model variable {list(columns)}")
    return frame, {k: v for k, v in dropped.items() if v}, kept


def _columns(frame: pd.DataFrame, terms: Sequence[str], order: np.ndarray) -> np.ndarray:
    """The design matrix of ``terms`` (intercept, columns, products of columns), its rows in
    ``order``."""
    out = np.ones((len(order), len(terms)))
    for j, term in enumerate(terms):
        if term != INTERCEPT:
            for part in term.split(":"):
                out[:, j] *= _numeric(frame, part)[order]
    return out


def _ids(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """The IDs at ``rows`` as text (only those rows are converted; of a categorical column,
    only its categories)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        text = column.cat.categories.astype(str).to_numpy(dtype=object)
        return text[column.cat.codes.to_numpy()[rows]]
    return column.iloc[rows].astype(str).to_numpy()


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric, finite column as floats."""
    series = frame[column]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise AllianceDataError(
            f"fit_nested: column '{column}' must be numeric (it is {series.dtype}); code a "
            "categorical predictor as numeric 0/1 columns first")
    values = series.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise AllianceDataError(f"fit_nested: column '{column}' has infinite values")
    return values


def column_rms(z: np.ndarray) -> np.ndarray:
    """Root mean square of each column (1 for an all-zero column)."""
    rms = np.sqrt(np.mean(z**2, axis=0))
    return np.where(rms > 0, rms, 1.0)


def _starts(codes: np.ndarray) -> np.ndarray:
    """First index of each run of equal consecutive codes."""
    return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])


def _check_nested(frame: pd.DataFrame, client: str, therapist: str | None,
                  client_code: np.ndarray, therapist_code: np.ndarray) -> None:
    """Every client has one therapist; otherwise name the statsmodels route.

    ``client_code`` and ``therapist_code`` are the columns' codes in order of first
    appearance (``pandas.factorize``); a client is crossed when any of its rows has another
    therapist than its first row.
    """
    if therapist is None:
        return
    # codes appear in increasing order, so a client's first row is where the running
    # maximum of the codes grows
    running = np.maximum.accumulate(client_code)
    first_rows = np.flatnonzero(np.r_[True, running[1:] != running[:-1]])
    crossed = np.unique(client_code[therapist_code != therapist_code[first_rows][client_code]])
    if len(crossed):
        examples = ", ".join(map(str, frame[client].iloc[first_rows[crossed[:5]]]))
        raise AllianceDataError(
            f"fit_nested covers nested designs only, but {len(crossed)} client(s) in "
            f"'{client}' are seen by more than one therapist in '{therapist}' (e.g. {examples}): "
            f"clients and therapists are crossed, not nested. {STATSMODELS_ROUTE}")


def _check_identifiable(design: Design, client: str, therapist: str | None) -> None:
    """lme4's default checks of the grouping factors, and collinear fixed effects."""
    n = design.y.size
    if n and np.all(design.y == design.y[0]):
        raise NotEstimableError(f"fit_nested: the outcome has no variance (every value is "
                                f"{design.y[0]:g}); no model of it can be fitted")
    levels = [(client, design.n_clients)] + ([(therapist, design.n_therapists)]
                                             if therapist else [])
    for column, count in levels:
        if count < 2:
            raise NotEstimableError(f"fit_nested: '{column}' has {count} level; a random "
                                    "effect needs at least 2 (lme4 stops too)")
    if therapist and design.n_therapists == design.n_clients:
        raise NotEstimableError(f"fit_nested: every therapist in '{therapist}' has one client, so "
                                "therapist and client effects cannot be told apart; drop the "
                                "therapist level (therapist=None)")
    if n <= design.n_clients:
        raise NotEstimableError(f"fit_nested: {n} observations for {design.n_clients} clients; "
                                "client and residual variances cannot be told apart")
    n_random = (design.n_clients * len(design.client_names)
                + design.n_therapists * len(design.therapist_names))
    if n <= n_random:
        raise NotEstimableError(
            f"fit_nested: {n} observations for {n_random} random effects; the random-effects "
            "variances and the residual variance are unidentifiable (lme4 stops too)")
    _check_rank(design.x, design.fixed_names)


def _check_rank(x: np.ndarray, names: Sequence[str]) -> None:
    cross = np.einsum("ni,nj->ij", x, x)
    scale = np.sqrt(np.diag(cross))
    if np.any(scale == 0):
        raise NotEstimableError(f"fit_nested: fixed term(s) {np.array(names)[scale == 0]} are "
                                "all zero")
    values, vectors = np.linalg.eigh(cross / np.outer(scale, scale))
    if values[0] < 1e-10 * values[-1]:
        involved = [n for n, v in zip(names, vectors[:, 0], strict=True) if abs(v) > 1e-3]
        raise NotEstimableError(f"fit_nested: the fixed terms {involved} are collinear (e.g. a "
                                "client-level variable and its client mean); drop one")
