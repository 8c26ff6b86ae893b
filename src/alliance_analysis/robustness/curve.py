"""The specification curve: every combination of the analyst's choices, fitted and summarised.

Each specification of a :class:`~alliance_analysis.specs.RobustnessSpec` is a ``models:``
entry (:func:`alliance_analysis.multilevel.specified.fit_model`: the engine, REML or ML,
Satterthwaite df and p); its ``target`` coefficient is kept with its SE, interval, df, p,
number of rows and the fit's flags. A specification the data cannot identify is kept as a
row with NaN estimates and its reason. Fits run in chunks, in this process or on Dask
(:func:`alliance_analysis.stats.dask_runner.dask_client`), and each chunk is stored the
moment it is done under a key of everything that decides it, so an interrupted run resumes
and the rows never depend on the number of workers (each fit is deterministic and the rows
are read back in specification order).

References
----------
Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis.
*Nature Human Behaviour*, 4, 1208-1214.
Steegen, S., Tuerlinckx, F., Gelman, A., & Vanpaemel, W. (2016). Increasing transparency
through a multiverse analysis. *Perspectives on Psychological Science*, 11, 702-712.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula

from alliance_analysis import __version__
from alliance_analysis.errors import AllianceParamsError, ConvergenceWarning, NotEstimableError
from alliance_analysis.multilevel.specified import (check_models, derive_columns, fit_model,
                                                    model_frame)
from alliance_analysis.specs import ModelSpec, RobustnessSpec

#: Result columns of every specification, after its choices (``tables/robustness_specifications``).
RESULT_COLUMNS = ("estimate", "se", "ci_low", "ci_high", "df", "p", "n_obs", "converged",
                  "singular", "preregistered", "warnings")
#: Columns of the one-row summary (``tables/robustness_summary``).
SUMMARY_COLUMNS = ("target", "n_specifications", "n_estimated", "n_flagged",
                   "preregistered_estimate", "preregistered_sign", "share_preregistered_sign",
                   "share_significant_same_sign", "median_estimate", "min_estimate",
                   "max_estimate", "preregistered_rank")


def model_spec(robustness: RobustnessSpec, spec: dict[str, Any]) -> ModelSpec:
    """The ``models:`` entry of one specification."""
    return ModelSpec(formula=spec["formula"], reml=robustness.reml, where=spec["where"])


def specification_table(robustness: RobustnessSpec) -> pd.DataFrame:
    """One row per specification: ``spec_id`` (1..n), each choice, ``where``, ``formula``,
    ``target`` (in :meth:`RobustnessSpec.specifications` order)."""
    rows = [{"spec_id": k, **spec["choices"], "where": spec["where"] or "",
             "formula": spec["formula"], "target": spec["target"]}
            for k, spec in enumerate(robustness.specifications(), start=1)]
    return pd.DataFrame(rows)


def check_curve(sessions: pd.DataFrame, robustness: RobustnessSpec,
                early_sessions: int = 5) -> None:
    """Every data problem of every specification, before anything is fitted.

    Raises
    ------
    AllianceParamsError
        Listing, per specification (``spec_<k>``), columns that are not in the data, filters
        that fail, models with no complete rows; and targets that are not a column of their
        formula's fixed part.
    """
    specs = robustness.specifications()
    models = {f"spec_{k}": model_spec(robustness, s) for k, s in enumerate(specs, start=1)}
    check_models(sessions, models, early_sessions)
    missing = []
    for k, spec in enumerate(specs, start=1):
        parsed = model_spec(robustness, spec).parsed()
        fixed = set(Formula(parsed.fixed).required_variables)
        if spec["target"] not in fixed:
            missing.append(f"spec_{k}: target {spec['target']!r} (fixed-part columns: "
                           f"{sorted(fixed)})")
    if missing:
        raise AllianceParamsError(
            "robustness: the target must be a numeric column of the formula's fixed part "
            "(its coefficient is studied, and the joint test removes its effect), e.g. "
            "'{alliance}_within_lag1'; not so in " + "; ".join(missing[:5]))


def fit_specification(sessions: pd.DataFrame, robustness: RobustnessSpec,
                      spec: dict[str, Any], spec_id: int, *, early_sessions: int = 5,
                      ci_level: float = 0.95, max_iter: int = 1000) -> dict[str, Any]:
    """Fit one specification and return its row (:data:`RESULT_COLUMNS` and ``spec_id``)."""
    row: dict[str, Any] = {"spec_id": spec_id, **dict.fromkeys(RESULT_COLUMNS[:-4], np.nan)}
    row.update(converged=False, singular=False,
               preregistered=robustness.is_preregistered(spec), warnings="")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            result = fit_model(sessions, f"spec_{spec_id}", model_spec(robustness, spec),
                               early_sessions=early_sessions, ci_level=ci_level,
                               max_iter=max_iter)
        except (NotEstimableError, np.linalg.LinAlgError) as exc:
            row["warnings"] = f"NOT ESTIMABLE: {str(exc).removeprefix('fit_nested: ')}"
            return row
    terms = result.params.set_index("term")
    if spec["target"] not in terms.index:
        row["warnings"] = (f"the target {spec['target']!r} is not among the terms "
                           f"{list(terms.index)}")
        return row
    target = terms.loc[spec["target"]]
    row.update({key: float(target[key]) for key in ("estimate", "se", "ci_low", "ci_high", "p")
                if key in target.index})
    row["df"] = float(target["df"]) if "df" in target.index else np.nan
    row.update(n_obs=int(result.fit["n_obs"]), converged=bool(result.fit["converged"]),
               singular=bool(result.fit.get("singular", False)),
               warnings="; ".join(map(str, result.fit["warnings"])))
    return row


def fit_chunk(sessions: pd.DataFrame, robustness: RobustnessSpec, spec_ids: Sequence[int],
              early_sessions: int, ci_level: float, max_iter: int) -> pd.DataFrame:
    """The rows of several specifications (1-based ids), in order; runs on a Dask worker."""
    specs = robustness.specifications()
    return pd.DataFrame([fit_specification(sessions, robustness, specs[k - 1], k,
                                           early_sessions=early_sessions, ci_level=ci_level,
                                           max_iter=max_iter) for k in spec_ids])


def cache_folder(processed_dir: str | Path) -> Path:
    """Where a run's fitted specifications are kept: ``<processed>.cache/robustness`` beside
    the processed folder (a run writes into ``<processed>.partial`` and swaps it in only
    when it completes, so chunks kept there would be lost with an interrupted run; the cache
    holds estimates only, never data, and its key includes a hash of the data)."""
    folder = Path(processed_dir)
    name = folder.name.removesuffix(".partial")
    return folder.with_name(f"{name}.cache") / "robustness"


def curve_key(sessions: pd.DataFrame, robustness: RobustnessSpec, settings: dict[str, Any]
              ) -> str:
    """A hash of everything that decides the rows: package version, data, specifications and
    fitting settings (not where or how they run)."""
    payload = json.dumps({"version": __version__,
                          "spec": robustness.model_dump(mode="json", exclude={"dask",
                                                                              "chunk_size",
                                                                              "joint_test"}),
                          "settings": settings,
                          # the values' hash ignores names: a swapped column mapping must
                          # change the key too
                          "columns": [str(c) for c in sessions.columns],
                          "dtypes": [str(d) for d in sessions.dtypes]},
                         sort_keys=True, default=str)
    data = pd.util.hash_pandas_object(sessions, index=True).to_numpy()
    return hashlib.sha256(payload.encode() + data.tobytes()).hexdigest()[:16]


def run_curve(sessions: pd.DataFrame, robustness: RobustnessSpec, store: str | Path | None = None,
              *, early_sessions: int = 5, ci_level: float = 0.95, max_iter: int = 1000,
              progress: bool = True) -> pd.DataFrame:
    """Fit every specification (resuming stored chunks) and return the curve's table.

    Parameters
    ----------
    sessions
        The processed session table.
    robustness
        The ``robustness:`` section.
    store
        Folder for the chunks (``<store>/<key>/specs-<first>-<last>.parquet``); None keeps
        nothing.
    early_sessions, ci_level, max_iter
        As for ``models:`` (:func:`~alliance_analysis.multilevel.specified.fit_model`).
    progress
        Show a progress bar of the specifications left to fit.

    Returns
    -------
    pandas.DataFrame
        :func:`specification_table` joined with :data:`RESULT_COLUMNS`, one row per
        specification in order.
    """
    from alliance_analysis.stats.dask_runner import (chunked, optional_client, progress_bar,
                                                     run_chunks)

    settings = {"early_sessions": early_sessions, "ci_level": ci_level, "max_iter": max_iter}
    key = curve_key(sessions, robustness, settings)
    table = specification_table(robustness)
    folder = (Path(store) / key) if store else None
    ids = list(table["spec_id"])
    size = robustness.chunk_size
    chunks = chunked(ids, size)
    done: dict[tuple[int, ...], pd.DataFrame] = {}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for chunk in chunks:
            path = folder / f"specs-{chunk[0]}-{chunk[-1]}.parquet"
            if path.is_file():
                done[chunk] = pd.read_parquet(path)
    todo = [c for c in chunks if c not in done]
    if todo:
        # the derived columns of every specification, made once: each specification's model
        # frame then finds its columns made (the same values it would make from
        # ``sessions``). The data are checked before anything is fitted; with every chunk
        # stored there is nothing to check: the run that stored them checked this data and
        # these specifications (the key is a hash of both) first.
        needed = set().union(*(model_spec(robustness, spec).parsed().variables()
                               for spec in robustness.specifications()))
        sessions = derive_columns(sessions, needed, early_sessions)
        check_curve(sessions, robustness, early_sessions)

    def keep(chunk: tuple[int, ...], rows: pd.DataFrame) -> None:
        done[chunk] = rows
        if folder is not None:
            path = folder / f"specs-{chunk[0]}-{chunk[-1]}.parquet"
            partial = path.with_suffix(".tmp")
            rows.to_parquet(partial, index=False)
            partial.replace(path)

    args = (early_sessions, ci_level, max_iter)
    with progress_bar(sum(len(c) for c in todo), len(ids) - sum(len(c) for c in todo),
                       progress, what="specifications") as advance:
        def finished(index: int, rows: pd.DataFrame) -> None:
            keep(todo[index], rows)
            advance(len(todo[index]))

        with optional_client(robustness.dask if todo else None) as client:
            run_chunks(fit_chunk, [(robustness, chunk, *args) for chunk in todo], (sessions,),
                       client=client, keys=[f"robustness-{c[0]}-{c[-1]}" for c in todo],
                       on_done=finished)
    rows = pd.concat([done[c] for c in chunks], ignore_index=True)
    return table.merge(rows, on="spec_id", how="left", validate="one_to_one")


def summarize(curve: pd.DataFrame, robustness: RobustnessSpec, alpha: float = 0.05
              ) -> pd.DataFrame:
    """The curve in one row (:data:`SUMMARY_COLUMNS`).

    ``share_preregistered_sign``: the share of estimated specifications whose estimate has
    the preregistered specification's sign (without a preregistered one, the sign of the
    median); ``share_significant_same_sign``: the share with p < ``alpha`` in that direction;
    ``preregistered_rank``: its place among the estimates sorted from the smallest (1).
    """
    estimated = curve[curve["estimate"].notna()]
    pre = curve[curve["preregistered"].astype(bool)]
    pre_estimate = float(pre["estimate"].iloc[0]) if len(pre) else np.nan
    median = float(estimated["estimate"].median()) if len(estimated) else np.nan
    reference = pre_estimate if np.isfinite(pre_estimate) else median
    sign = float(np.sign(reference)) if np.isfinite(reference) else np.nan
    same = np.sign(estimated["estimate"]) == sign
    ranks = estimated["estimate"].rank(method="min")
    rank = (int(ranks[pre.index[0]]) if len(pre) and pre.index[0] in ranks.index else np.nan)
    flagged = (~curve["converged"].astype(bool)) | curve["singular"].astype(bool)
    return pd.DataFrame([{
        "target": robustness.target, "n_specifications": len(curve),
        "n_estimated": len(estimated), "n_flagged": int(flagged.sum()),
        "preregistered_estimate": pre_estimate, "preregistered_sign": sign,
        "share_preregistered_sign": float(same.mean()) if len(estimated) else np.nan,
        "share_significant_same_sign": (float((same & (estimated["p"] < alpha)).mean())
                                        if len(estimated) else np.nan),
        "median_estimate": median,
        "min_estimate": float(estimated["estimate"].min()) if len(estimated) else np.nan,
        "max_estimate": float(estimated["estimate"].max()) if len(estimated) else np.nan,
        "preregistered_rank": rank}], columns=list(SUMMARY_COLUMNS))


#: Columns of the joint test's one-row table (``tables/robustness_joint_test``).
JOINT_COLUMNS = ("resamples", "seed", "direction", "observed_median",
                 "observed_n_significant", "p_median", "p_n_significant",
                 "n_failed_fits")


def null_frames(sessions: pd.DataFrame, curve: pd.DataFrame, robustness: RobustnessSpec,
                early_sessions: int = 5) -> dict[int, pd.DataFrame]:
    """Each estimated specification's rows with its target effect removed from the outcome.

    The model frame of specification k (its filter applied, derived columns built, complete
    rows) with ``y - b_k x_k`` as the outcome: the data as they would be if the target
    coefficient were 0, everything else kept (Simonsohn et al. 2020, "inference under the
    null").
    """
    specs = robustness.specifications()
    frames = {}
    for row in curve.itertuples(index=False):
        if not np.isfinite(row.estimate):
            continue
        spec = specs[row.spec_id - 1]
        model = model_spec(robustness, spec)
        frame = model_frame(sessions, f"spec_{row.spec_id}", model, early_sessions).data
        outcome = model.parsed().outcome
        frame = frame.assign(**{outcome: frame[outcome] - row.estimate * frame[spec["target"]]})
        frames[row.spec_id] = frame
    return frames


def client_order(sessions: pd.DataFrame) -> list[str]:
    """The clients in an order that does not depend on the pseudonym key: by their first
    row in the input file (``source_row``) when the table has it, else by pseudonym. The
    draws of the joint test index this list, so a rerun with another key draws the same
    clients."""
    ids = sessions["client_id"].astype(str)
    if "source_row" in sessions.columns:
        first = sessions.assign(client_id=ids).groupby("client_id")["source_row"].min()
        return list(first.sort_values(kind="stable").index)
    return sorted(ids.unique())


def resample_clients(frame: pd.DataFrame, clients: np.ndarray) -> pd.DataFrame:
    """The rows of the drawn clients, each draw a distinct client (``<id>#<draw>``)."""
    groups = frame.groupby("client_id", sort=False).indices
    parts = [frame.iloc[groups[c]].assign(client_id=f"{c}#{i}")
             for i, c in enumerate(clients) if c in groups]
    return pd.concat(parts, ignore_index=True)


def null_resample(frames: dict[int, pd.DataFrame], robustness: RobustnessSpec, draw: int,
                  clients: Sequence[str], seed: int, early_sessions: int, ci_level: float,
                  max_iter: int) -> pd.DataFrame:
    """One resample under the null: the same clients drawn (with replacement, seeded by
    ``seed`` and ``draw``) for every specification, each refitted; rows ``draw, spec_id,
    estimate, p``."""
    rng = np.random.default_rng([seed, draw])
    drawn = rng.choice(np.asarray(clients, dtype=object), size=len(clients), replace=True)
    specs = robustness.specifications()
    rows = []
    for spec_id, frame in frames.items():
        spec = {**specs[spec_id - 1], "where": None}
        row = fit_specification(resample_clients(frame, drawn), robustness, spec, spec_id,
                                early_sessions=early_sessions, ci_level=ci_level,
                                max_iter=max_iter)
        rows.append({"draw": draw, "spec_id": spec_id, "estimate": row["estimate"],
                     "p": row["p"]})
    return pd.DataFrame(rows)


def joint_test(sessions: pd.DataFrame, curve: pd.DataFrame, robustness: RobustnessSpec,
               resamples: int, seed: int, *, early_sessions: int = 5, ci_level: float = 0.95,
               max_iter: int = 1000, alpha: float = 0.05, progress: bool = True
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The joint test of the curve under the null (Simonsohn, Simmons & Nelson 2020).

    For each resample, clients are drawn with replacement (the same clients for every
    specification) from data in which each specification's target effect was removed
    (:func:`null_frames`), and every specification is refitted. Two statistics of the
    observed curve are compared with their null distributions: the median estimate
    (``p_median``: the share of resamples whose median is at least as far from 0 in the
    observed direction) and the number of specifications significant (p < ``alpha``) in the
    observed direction (``p_n_significant``: the share with at least as many). Resamples run
    in this process or on Dask (``robustness.dask``); draw r always uses the seed
    ``[seed, r]``, so the result does not depend on the number of workers.

    Returns
    -------
    tuple of pandas.DataFrame
        The one-row test (:data:`JOINT_COLUMNS`) and every refit (``draw, spec_id,
        estimate, p``).
    """
    from alliance_analysis.stats.dask_runner import optional_client, progress_bar, run_chunks

    frames = null_frames(sessions, curve, robustness, early_sessions)
    clients = client_order(sessions)
    sessions_clients = {k: f.assign(client_id=f["client_id"].astype(str))
                        for k, f in frames.items()}
    args = (early_sessions, ci_level, max_iter)
    with progress_bar(resamples, 0, progress, what="resamples under the null") as advance, \
            optional_client(robustness.dask if resamples else None) as client:
        draws = run_chunks(null_resample, [(robustness, draw, clients, seed, *args)
                                           for draw in range(resamples)], (sessions_clients,),
                           client=client, keys=[f"robustness-null-{d}" for d in range(resamples)],
                           on_done=lambda index, rows: advance(1))
    refits = (pd.concat(draws, ignore_index=True).sort_values(["draw", "spec_id"],
                                                              ignore_index=True)
              if draws else pd.DataFrame(columns=["draw", "spec_id", "estimate", "p"]))
    estimated = curve[curve["estimate"].notna()]
    median = float(estimated["estimate"].median())
    direction = float(np.sign(median)) or 1.0
    observed_n = int(((np.sign(estimated["estimate"]) == direction)
                      & (estimated["p"] < alpha)).sum())
    per_draw = refits.groupby("draw").agg(
        median=("estimate", "median"),
        significant=("estimate", lambda e: int(((np.sign(e) == direction)
                                                & (refits.loc[e.index, "p"] < alpha)).sum())))
    # a draw whose every refit failed has no median: it is left out of p_median (counted in
    # n_failed_fits), rather than counted as "not as extreme"
    medians = per_draw["median"].dropna()
    test = pd.DataFrame([{
        "resamples": resamples, "seed": seed, "direction": direction,
        "observed_median": median, "observed_n_significant": observed_n,
        "p_median": float((direction * medians >= direction * median).mean())
        if len(medians) else np.nan,
        "p_n_significant": float((per_draw["significant"] >= observed_n).mean())
        if len(per_draw) else np.nan,
        "n_failed_fits": int(refits["estimate"].isna().sum())}], columns=list(JOINT_COLUMNS))
    return test, refits
