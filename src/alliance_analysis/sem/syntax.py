"""lavaan-style model syntax, generated from the instrument and the panel design.

Every SEM of the project is written here as text (semopy reads the lavaan operators ``=~``,
``~``, ``~~`` and ``~ 1``), so that the syntax actually fitted is shown with each result and
can be pasted into lavaan to check it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import Instrument

#: The three measurement models compared for an alliance questionnaire.
CFA_MODELS = ("one_factor", "three_factor", "bifactor")

#: Name of the general factor in the one-factor and bifactor models.
GENERAL_FACTOR = "alliance"


def cfa_syntax(instrument: Instrument, kind: Literal["one_factor", "three_factor", "bifactor"]
               ) -> str:
    """Measurement model of a questionnaire's items.

    Parameters
    ----------
    instrument
        The questionnaire; ``three_factor`` and ``bifactor`` use its subscales (e.g. the
        WAI-SR's goal, task and bond).
    kind
        ``one_factor``: every item on one factor. ``three_factor``: each item on its
        subscale's factor, factors correlated. ``bifactor``: every item on a general factor
        and on its subscale's specific factor, all factors uncorrelated (Reise 2012).

    Notes
    -----
    Each factor's scale is set by fixing its first loading to 1 (lavaan's default marker
    method); standardized loadings are reported beside the raw ones.

    References
    ----------
    Reise, S. P. (2012). The rediscovery of bifactor measurement models. *Multivariate
    Behavioral Research*, 47, 667-696.
    """
    if kind not in CFA_MODELS:
        raise AllianceParamsError(f"CFA model must be one of {list(CFA_MODELS)}; got {kind!r}")
    items = instrument.items()
    general = [f"{GENERAL_FACTOR} =~ " + " + ".join(items)]
    if kind == "one_factor":
        return general[0] + "\n"
    if len(instrument.subscales) < 2:
        raise AllianceParamsError(
            f"a {kind} model needs the subscales of {instrument.key!r}; it has "
            f"{sorted(instrument.subscales) or 'none'}. Define them under 'instruments:'")
    specific = [f"{name} =~ " + " + ".join(instrument.subscale_items(name))
                for name in instrument.subscales]
    if kind == "three_factor":
        return "\n".join(specific) + "\n"
    factors = [GENERAL_FACTOR, *instrument.subscales]
    orthogonal = [f"{a} ~~ 0*{b}" for i, a in enumerate(factors) for b in factors[i + 1:]]
    return "\n".join(general + specific + orthogonal) + "\n"


def riclpm_syntax(x: Sequence[str], y: Sequence[str], x_name: str = "x", y_name: str = "y",
                  random_intercepts: bool = True, constrain_autoregressive: bool = False,
                  constrain_crosslagged: bool = False, covariates: Sequence[str] = (),
                  label_lagged: bool = False) -> str:
    """Random-intercept cross-lagged panel model for two variables over K waves.

    Parameters
    ----------
    x, y
        The K observed columns of each variable, in wave order (e.g. alliance and symptoms
        at sessions 1..K).
    x_name, y_name
        Short names used in the latent variables: ``ri_<x_name>`` is x's random intercept
        and ``w_<column>`` the within-person component of a column.
    random_intercepts
        False gives the traditional cross-lagged panel model (CLPM): the same lagged
        structure on the observed scores, with no stable between-person part.
    constrain_autoregressive, constrain_crosslagged
        Give the autoregressive (cross-lagged) paths one label per variable (direction), so
        that they are estimated equal over waves.
    covariates
        Time-invariant numeric columns predicting both random intercepts (RI-CLPM; in the
        CLPM the wave-1 scores), extension 1 of Mulder & Hamaker (2021). Each enters as a
        single-indicator latent variable ``<column>_lv`` (loading 1, residual variance and
        intercept 0, free mean and variance), so that FIML can use it; its estimates equal
        lavaan's with ``fixed.x = TRUE`` when the covariate is complete, and it is
        uncorrelated with the wave-1 within components, as lavaan's exogenous covariates.
    label_lagged
        Label each lagged path by direction and wave (``a_xx_2``: x at wave 1 -> x at wave
        2; ``a_yx_2``: x -> y), unless ``constrain_*`` labels it already. In a multigroup
        fit a label is shared by the groups, so this gives the model with the lagged paths
        equal over groups (extension 2 of Mulder & Hamaker, 2021).

    Returns
    -------
    str
        lavaan-style syntax, one statement per line.

    Notes
    -----
    Following Hamaker, Kuiper & Grasman (2015) and the lavaan code of Mulder & Hamaker
    (2021): each score is its wave's grand mean (free intercepts) plus a random intercept
    (loadings fixed to 1; RI-CLPM only) plus a within-person component ``w`` (a latent
    variable with loading 1; the observed residual variance is fixed to 0). The within
    components follow a first-order cross-lagged regression; the wave-1 components
    covary, and so do the residuals ("innovations") at later waves. Random intercepts are
    uncorrelated with the wave-1 within components (written out, because semopy would
    otherwise free the covariances of all exogenous latent variables). Labels: ``ar_x``, ``ar_y``
    (autoregressive), ``cl_xy`` (x -> later y), ``cl_yx`` (y -> later x).

    References
    ----------
    Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the
    cross-lagged panel model. *Psychological Methods*, 20, 102-116.
    Mulder, J. D., & Hamaker, E. L. (2021). Three extensions of the random intercept
    cross-lagged panel model. *Structural Equation Modeling*, 28, 638-648.
    """
    if len(x) != len(y) or len(x) < 2:
        raise AllianceParamsError(
            f"a cross-lagged panel needs the same number (>= 2) of waves for both variables; "
            f"got {len(x)} columns of x and {len(y)} of y")
    if random_intercepts and len(x) < 3:
        raise AllianceParamsError("an RI-CLPM needs at least 3 waves to be identified; got "
                                  f"{len(x)}")
    wx, wy = [f"w_{c}" for c in x], [f"w_{c}" for c in y]
    lines = []
    if random_intercepts:
        rx, ry = f"ri_{x_name}", f"ri_{y_name}"
        lines += ["# between part: stable random intercepts",
                  f"{rx} =~ " + " + ".join(f"1*{c}" for c in x),
                  f"{ry} =~ " + " + ".join(f"1*{c}" for c in y),
                  f"{rx} ~~ {rx}", f"{ry} ~~ {ry}", f"{rx} ~~ {ry}",
                  f"{rx} ~~ 0*{wx[0]}", f"{rx} ~~ 0*{wy[0]}",
                  f"{ry} ~~ 0*{wx[0]}", f"{ry} ~~ 0*{wy[0]}"]
    lines.append("# within-person components")
    lines += [f"{w} =~ 1*{c}" for w, c in zip(wx + wy, list(x) + list(y))]
    lines += [f"{c} ~~ 0*{c}" for c in list(x) + list(y)]
    lines.append("# lagged effects between the within-person components")
    for t in range(1, len(x)):
        def label(constant: str, constrained: bool, wave_label: str) -> str:
            return (f"{constant}*" if constrained else
                    f"{wave_label}_{t + 1}*" if label_lagged else "")
        ar_x = label("ar_x", constrain_autoregressive, "a_xx")
        ar_y = label("ar_y", constrain_autoregressive, "a_yy")
        cl_xy = label("cl_xy", constrain_crosslagged, "a_yx")
        cl_yx = label("cl_yx", constrain_crosslagged, "a_xy")
        lines.append(f"{wx[t]} ~ {ar_x}{wx[t - 1]} + {cl_yx}{wy[t - 1]}")
        lines.append(f"{wy[t]} ~ {cl_xy}{wx[t - 1]} + {ar_y}{wy[t - 1]}")
    if covariates:
        lines.append("# time-invariant covariates (single-indicator latent variables)")
        predicted = [f"ri_{x_name}", f"ri_{y_name}"] if random_intercepts else [wx[0], wy[0]]
        latents = [f"{c}_lv" for c in covariates]
        for c, lv in zip(covariates, latents):
            lines += [f"{lv} =~ 1*{c}", f"{c} ~~ 0*{c}", f"{c} ~ 0*1", f"{lv} ~ 1",
                      f"{lv} ~~ {lv}"]
            if random_intercepts:
                lines += [f"{lv} ~~ 0*{wx[0]}", f"{lv} ~~ 0*{wy[0]}"]
        lines += [f"{a} ~~ {b}" for k, a in enumerate(latents) for b in latents[k + 1:]]
        lines += [f"{target} ~ " + " + ".join(latents) for target in predicted]
    lines.append("# wave-1 covariance and the innovations' (residual) covariances")
    lines += [f"{a} ~~ {b}" for a, b in zip(wx, wy)]
    lines += [f"{w} ~~ {w}" for pair in zip(wx, wy) for w in pair]
    return "\n".join(lines) + "\n"


def growth_syntax(outcomes: Sequence[str], times: Sequence[float],
                  predictor: str | None = None) -> str:
    """Linear latent growth model, optionally with a predictor of intercept and slope.

    Parameters
    ----------
    outcomes
        The repeated measures, in time order.
    times
        The time score of each measure (slope loadings); the intercept is the level at time
        0.
    predictor
        An observed column regressed on by intercept and slope. It enters through a
        single-indicator latent variable (``<predictor>_lv``), so its mean and variance are
        estimated and FIML can use clients with it missing.

    Notes
    -----
    Observed intercepts are fixed at 0 and the latent means free; residual variances are
    free at each time; intercept and slope (residuals) covary.

    References
    ----------
    Bollen, K. A., & Curran, P. J. (2006). *Latent curve models: A structural equation
    perspective*. Wiley.
    """
    if len(outcomes) != len(times) or len(outcomes) < 3:
        raise AllianceParamsError(
            f"a linear growth model needs >= 3 measures, one time score each; got "
            f"{len(outcomes)} measures and {len(times)} times")
    lines = ["icept =~ " + " + ".join(f"1*{c}" for c in outcomes),
             "slope =~ " + " + ".join(f"{_number(t)}*{c}" for t, c in zip(times, outcomes)),
             "icept ~~ icept", "slope ~~ slope", "icept ~~ slope",
             "icept ~ 1", "slope ~ 1"]
    lines += [f"{c} ~ 0*1" for c in outcomes]
    if predictor is not None:
        latent = f"{predictor}_lv"
        lines += [f"{latent} =~ 1*{predictor}", f"{predictor} ~~ 0*{predictor}",
                  f"{predictor} ~ 0*1", f"{latent} ~ 1", f"{latent} ~~ {latent}",
                  f"icept ~ {latent}", f"slope ~ {latent}"]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """A time score as text: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
