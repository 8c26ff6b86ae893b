"""Multigroup structural equation models, by lavaan's conventions.

One model syntax is fitted in each group of a grouping column (``group = "school"`` in
lavaan). Each group has its own copy of every parameter unless it is constrained equal over
groups:

* by a **label** in the syntax (``f =~ a*x2``): as in lavaan, a plain label names one
  parameter shared by all groups;
* by **group.equal**: every parameter of a kind is shared (``loadings``, ``intercepts``,
  ``residuals``, ``residual.covariances``, ``means``, ``lv.variances``, ``lv.covariances``,
  ``regressions``). With ``intercepts`` equal and ``means`` not, the latent means are freed
  in every group but the first (lavaan's rule, the scalar model of measurement invariance).

The groups share one parameter vector; every step after this module takes the groups'
structures and data as tuples: the estimation (the log-likelihood summed over groups,
:func:`alliance_analysis.sem.estimation.fit`), the fit statistics by lavaan's multigroup
rules (:func:`alliance_analysis.sem.fit.fit_measures`) and MLR
(:mod:`alliance_analysis.sem.robust`).

References
----------
Jöreskog, K. G. (1971). Simultaneous factor analysis in several populations.
*Psychometrika*, 36, 409-426.
Steiger, J. H. (1998). A note on multiple sample extensions of the RMSEA fit index.
*Structural Equation Modeling*, 5, 411-419.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError, AllianceParamsError, NotEstimableError
from alliance_analysis.sem.estimation import Moments, Structure, moments

#: The kinds of parameter ``group_equal`` may constrain, as lavaan's ``group.equal``.
GROUP_EQUAL = ("loadings", "intercepts", "means", "residuals", "residual.covariances",
               "lv.variances", "lv.covariances", "regressions")


def parameter_kind(model: Structure, k: int) -> str:
    """lavaan's ``group.equal`` kind of free parameter ``k`` (by its first cell)."""
    for key in ("lambda", "beta", "psi", "theta", "gamma1", "gamma2"):
        if key in model.patterns and model.patterns[key][k].any():
            cell = np.argwhere(model.patterns[key][k])[0]
            break
    else:  # pragma: no cover - every free parameter sits in some cell
        raise ValueError(f"parameter {model.names[k]} has no cell")
    if key == "lambda":
        return "loadings"
    if key == "beta":
        return "regressions"
    if key == "gamma2":
        return "intercepts"
    if key == "gamma1":
        return "means" if model.inner[cell[0]] in model.latent else "intercepts"
    i, j = int(cell[0]), int(cell[1])
    if key == "theta":
        return "residuals" if i == j else "residual.covariances"
    latent = model.inner[i] in model.latent and model.inner[j] in model.latent
    if i == j:
        return "lv.variances" if latent else "residuals"
    return "lv.covariances" if latent else "residual.covariances"


def group_structures(base: Structure, n_groups: int, group_equal: Sequence[str] = ()
                     ) -> tuple[Structure, ...]:
    """One structure per group over a shared parameter vector.

    Parameters
    ----------
    base
        The single-group structure of the syntax (:func:`~alliance_analysis.sem.estimation.
        structure`).
    n_groups
        Number of groups.
    group_equal
        Kinds of parameters equal over groups (:data:`GROUP_EQUAL`).

    Returns
    -------
    tuple of Structure
        Structures with the same ``names`` (the shared vector: a parameter free in each
        group is named ``<name>.g<group>``); group g's patterns place the vector's entries
        in its matrices.
    """
    unknown = [kind for kind in group_equal if kind not in GROUP_EQUAL]
    if unknown:
        raise AllianceParamsError(f"group_equal: unknown kind(s) {unknown}; choose from "
                                  f"{list(GROUP_EQUAL)}")
    names: list[str] = []
    index: list[list[int]] = []  # index[k][g]: the shared vector's entry of base k in group g
    for k, name in enumerate(base.names):
        shared = not name.startswith("_") or parameter_kind(base, k) in group_equal
        if shared:
            index.append([len(names)] * n_groups)
            names.append(name)
        else:
            index.append(list(range(len(names), len(names) + n_groups)))
            names += [f"{name}.g{g + 1}" for g in range(n_groups)]
    free_means = []  # latent means freed in groups 2.. when intercepts are equal
    if (base.meanstructure and "intercepts" in group_equal and "means" not in group_equal
            and n_groups > 1):
        for i, inner in enumerate(base.inner):
            if (inner in base.latent and not base.patterns["gamma1"][:, i].any()
                    and base.fixed["gamma1"][i] == 0):
                free_means.append((i, len(names)))
                names += [f"_{inner}~1.g{g + 1}" for g in range(1, n_groups)]
    out = []
    for g in range(n_groups):
        patterns = {}
        for key, pattern in base.patterns.items():
            new = np.zeros((len(names),) + pattern.shape[1:])
            for k in range(base.n_free):
                new[index[k][g]] += pattern[k]
            if key == "gamma1" and g > 0:
                for i, first in free_means:
                    new[first + g - 1, i] = 1.0
            patterns[key] = new
        out.append(replace(base, names=tuple(names), patterns=patterns))
    return tuple(out)


def group_moments(data: pd.DataFrame, columns: tuple[str, ...], group: str,
                  missing: Literal["listwise", "fiml"]
                  ) -> tuple[tuple[Moments, ...], tuple[str, ...], int]:
    """The data of each group (groups in order of first appearance, as lavaan).

    Returns
    -------
    tuple
        The groups' :class:`Moments`, their labels, and the number of rows dropped because
        the group is missing.

    Raises
    ------
    AllianceDataError
        The group column is absent, has fewer than two groups, or a group has too few cases.
    """
    if group not in data.columns:
        raise AllianceDataError(f"the group column {group!r} is not in the data; columns "
                                f"present: {[str(c) for c in data.columns]}")
    labels = data[group]
    known = labels.notna()
    order = list(dict.fromkeys(labels[known].tolist()))
    if len(order) < 2:
        raise NotEstimableError(f"the group column {group!r} has {len(order)} group(s) "
                                f"({order}); a multigroup model needs at least two")
    parts = []
    for value in order:
        try:
            parts.append(moments(data.loc[labels == value], columns, missing))
        except AllianceDataError as error:
            raise type(error)(f"group {group} = {value!r}: {error}") from error
    return tuple(parts), tuple(str(v) for v in order), int((~known).sum())
