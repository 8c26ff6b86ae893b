"""Reproducing published reference results, side by side (``notebooks/validation/``).

Each function fits the workbench's own estimator to a public dataset and returns a tidy
comparison: ``quantity, published, reproduced, difference, tolerance, passed``. Tolerances are
half a unit of the last printed digit of the published value ("match to the decimals
printed"), unless stated otherwise. ``make reproduce`` runs every validation notebook and fails
when any comparison fails.

Sources of the published values:

* lme4 ``sleepstudy``: Bates, Mächler, Bolker & Walker (2015), *JSS 67*(1), section 3.
* ``psych::alpha`` on the ``bfi`` neuroticism items: raw alpha .8140, standardized .8147
  (psych 2.2.9 printed output; Revelle, 2022).
* Jacobson & Truax (1991) formulas, on a worked example computed by hand in the docstring of
  :func:`jacobson_truax_example`.
* lavaan tutorial (Rosseel, 2012; lavaan.ugent.be/tutorial): the three-factor CFA of
  HolzingerSwineford1939 and Bollen's (1989) PoliticalDemocracy SEM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceRunError

#: Columns of every comparison table.
COLUMNS = ("quantity", "published", "reproduced", "difference", "tolerance", "passed")


def compare(rows: Sequence[tuple[str, float, float, int | float]]) -> pd.DataFrame:
    """A comparison table from ``(quantity, published, reproduced, decimals or tolerance)``.

    An ``int`` in the last position is the number of decimals printed in the source (the
    tolerance is half a unit of that digit); a ``float`` is an absolute tolerance.
    """
    table = []
    for quantity, published, reproduced, precision in rows:
        tolerance = 0.5 * 10 ** -precision if isinstance(precision, int) else float(precision)
        difference = float(reproduced) - float(published)
        table.append({"quantity": quantity, "published": float(published),
                      "reproduced": float(reproduced), "difference": difference,
                      "tolerance": tolerance,
                      "passed": bool(abs(difference) <= tolerance + 1e-12)})
    return pd.DataFrame(table, columns=list(COLUMNS))


def require_all_passed(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return ``table`` if every comparison passed; raise :class:`AllianceRunError` if not."""
    failed = table[~table["passed"]]
    if len(failed):
        listed = "; ".join(f"{r.quantity}: published {r.published:g}, reproduced "
                           f"{r.reproduced:g}" for r in failed.itertuples())
        raise AllianceRunError(f"{name}: {len(failed)} comparison(s) failed: {listed}")
    return table


def _printed_or_relative(value: float, decimals: int, relative: float = 1e-3) -> float:
    """Half a unit of the last printed digit, or ``relative`` x |value| if that is larger."""
    return max(0.5 * 10 ** -decimals, relative * abs(value))


def sleepstudy(data_dir: str | Path) -> pd.DataFrame:
    """lme4's ``Reaction ~ Days + (Days | Subject)`` by REML, against Bates et al. (2015).

    The workbench fits it with :func:`alliance_analysis.multilevel.models.growth_model` (two levels,
    correlated intercept and slope), with Days 0..9 coded as sessions 1..10 from session 1.
    Tolerance: the printed decimals; for variance components the printed decimals or 1e-3
    relative, whichever is larger (the optimizers' own tolerance on variance components:
    statsmodels stops at 612.082 for the intercept variance, lme4 at 612.0897).
    """
    from alliance_analysis.multilevel.models import growth_model
    from alliance_analysis.options import MultilevelOptions

    data = pd.read_csv(Path(data_dir) / "sleepstudy.csv")
    sessions = pd.DataFrame({"client_id": data["Subject"].astype(str), "therapist_id": "-",
                             "session": data["Days"] + 1, "reaction_total": data["Reaction"]})
    options = MultilevelOptions(therapist_level=False, correlated_slope=True, reml=True)
    result = growth_model(sessions, "reaction", options)
    fixed = result.params.set_index("term")
    vc = result.extra["variance_components"]

    def component(level: str, term: object, term2: object = None) -> pd.Series:
        rows = vc[(vc["level"] == level)
                  & (vc["term"].isna() if term is None else vc["term"] == term)
                  & (vc["term2"].isna() if term2 is None else vc["term2"] == term2)]
        return rows.iloc[0]

    return compare([
        ("fixed: (Intercept)", 251.405, fixed.loc["(Intercept)", "estimate"], 3),
        ("fixed: (Intercept) SE", 6.825, fixed.loc["(Intercept)", "se"], 3),
        ("fixed: Days", 10.467, fixed.loc["session", "estimate"], 3),
        ("fixed: Days SE", 1.546, fixed.loc["session", "se"], 3),
        ("variance: Subject (Intercept)", 612.09, component("client", "(Intercept)")["vcov"],
         _printed_or_relative(612.09, 2)),
        ("variance: Subject Days", 35.07, component("client", "session")["vcov"],
         _printed_or_relative(35.07, 2)),
        ("correlation: (Intercept), Days", 0.066,
         component("client", "(Intercept)", "session")["sdcor"], 3),
        ("variance: Residual", 654.94, component("residual", None)["vcov"],
         _printed_or_relative(654.94, 2)),
        ("REML criterion", 1743.628, result.fit["reml_criterion"], 3),
    ])


def bfi_alpha(data_dir: str | Path) -> pd.DataFrame:
    """``psych::alpha`` on the bfi neuroticism items N1-N5 (pairwise, as psych does)."""
    from alliance_analysis.data.reliability import cronbach_alpha

    data = pd.read_csv(Path(data_dir) / "bfi.csv", index_col=0)
    alpha = cronbach_alpha(data[["N1", "N2", "N3", "N4", "N5"]], missing="pairwise")
    return compare([("raw alpha", 0.8140, alpha.alpha, 4),
                    ("standardized alpha", 0.8147, alpha.std_alpha, 4)])


def jacobson_truax_example() -> pd.DataFrame:
    r"""Jacobson & Truax's (1991) formulas on a worked example computed by hand.

    A questionnaire with pre-treatment SD :math:`s_{pre} = 7.5` and test-retest reliability
    :math:`r_{xx} = .88`; clinical norms mean 30 (SD 7.5), functional norms mean 10 (SD 5); a
    client goes from 30 to 18 and another from 24 to 20. By hand:

    * :math:`SE = 7.5\sqrt{1 - .88} = 2.598076`, :math:`S_{diff} = \sqrt{2 \cdot SE^2} =
      3.674235`;
    * client 1: :math:`RC = (18 - 30) / 3.674235 = -3.265986` (reliable, |RC| > 1.96);
      client 2: :math:`RC = -4 / 3.674235 = -1.088662` (not reliable);
    * cut-off c :math:`= (7.5 \cdot 10 + 5 \cdot 30) / (7.5 + 5) = 18`; a :math:`= 30 - 2
      \cdot 7.5 = 15`; b :math:`= 10 + 2 \cdot 5 = 20`;
    * client 1 ends at 18, at the cut-off c: clinical range (scores at or above the cut-off
      are clinical), so *reliably improved*, not recovered.
    """
    from alliance_analysis.instruments import Instrument
    from alliance_analysis.change.reliable_change import (classify_change, jacobson_truax_cutoffs,
                                                   reliable_change_criteria)

    instrument = Instrument(key="example", name="Worked example", construct="symptoms",
                            rater="client", n_items=10, item_min=0, item_max=6,
                            scoring="sum", source="Jacobson & Truax (1991), hand example")
    criteria = reliable_change_criteria(
        pd.Series([30.0, 24.0]), instrument, method="jacobson_truax", reliability=0.88,
        sd_pre=7.5, cutoff="c", clinical_mean=30, clinical_sd=7.5, functional_mean=10,
        functional_sd=5)
    pre_post = pd.DataFrame({"client_id": ["1", "2"], "pre_session": [1, 1],
                             "post_session": [10, 10], "pre": [30.0, 24.0],
                             "post": [18.0, 20.0]})
    classified = classify_change(pre_post, criteria).set_index("client_id")
    cutoffs = jacobson_truax_cutoffs(30, 7.5, 10, 5)
    category = {"reliably improved": 1.0}
    return compare([
        ("SE of measurement", 2.598076, criteria.se_measurement, 6),
        ("S_diff", 3.674235, criteria.s_diff, 6),
        ("RC client 1", -3.265986, classified.loc["1", "rc"], 6),
        ("RC client 2", -1.088662, classified.loc["2", "rc"], 6),
        ("cut-off a", 15.0, cutoffs["a"], 6),
        ("cut-off b", 20.0, cutoffs["b"], 6),
        ("cut-off c", 18.0, cutoffs["c"], 6),
        ("client 1 is 'reliably improved' (1 = yes)", 1.0,
         category.get(str(classified.loc["1", "category"]), 0.0), 0),
        ("client 2 is 'unchanged' (1 = yes)", 1.0,
         float(classified.loc["2", "category"] == "unchanged"), 0),
    ])


#: The lavaan tutorial's model syntax, verbatim.
HOLZINGER_SWINEFORD = """
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
"""
POLITICAL_DEMOCRACY = """
ind60 =~ x1 + x2 + x3
dem60 =~ y1 + y2 + y3 + y4
dem65 =~ y5 + y6 + y7 + y8
dem60 ~ ind60
dem65 ~ ind60 + dem60
y1 ~~ y5
y2 ~~ y4 + y6
y3 ~~ y7
y4 ~~ y8
y6 ~~ y8
"""


def _sem_fit_rows(fit: dict, published: dict[str, tuple[float, int]]) -> list:
    return [(f"fit: {name}", value, fit[name], decimals)
            for name, (value, decimals) in published.items()]


def holzinger_swineford(data_dir: str | Path) -> pd.DataFrame:
    """The lavaan tutorial's three-factor CFA of HolzingerSwineford1939 (default ML)."""
    from alliance_analysis.sem.models import fit_sem

    data = pd.read_csv(Path(data_dir) / "HolzingerSwineford1939.csv")
    result = fit_sem(HOLZINGER_SWINEFORD, data, "holzinger_swineford", missing="listwise")
    loadings = result.params.set_index("term")["estimate"]
    rows = _sem_fit_rows(result.fit, {
        "chi2": (85.306, 3), "df": (24, 0), "cfi": (0.931, 3), "tli": (0.896, 3),
        "rmsea": (0.092, 3), "rmsea_ci_low": (0.071, 3), "rmsea_ci_high": (0.114, 3),
        "srmr": (0.065, 3), "loglik": (-3737.745, 3), "aic": (7517.490, 3),
        "bic": (7595.339, 3)})
    for term, value in (("visual =~ x2", 0.554), ("visual =~ x3", 0.729),
                        ("textual =~ x5", 1.113), ("textual =~ x6", 0.926),
                        ("speed =~ x8", 1.180), ("speed =~ x9", 1.082)):
        rows.append((f"loading: {term}", value, loadings[term], 3))
    return compare(rows)


def political_democracy(data_dir: str | Path) -> pd.DataFrame:
    """Bollen's (1989) political democracy SEM as in the lavaan tutorial (default ML)."""
    from alliance_analysis.sem.models import fit_sem

    data = pd.read_csv(Path(data_dir) / "PoliticalDemocracy.csv")
    result = fit_sem(POLITICAL_DEMOCRACY, data, "political_democracy", missing="listwise")
    paths = result.params.set_index("term")["estimate"]
    rows = _sem_fit_rows(result.fit, {
        "chi2": (38.125, 3), "df": (35, 0), "cfi": (0.995, 3), "rmsea": (0.035, 3),
        "loglik": (-1547.791, 3), "aic": (3157.582, 3), "bic": (3229.424, 3)})
    for term, value in (("dem60 ~ ind60", 1.483), ("dem65 ~ ind60", 0.572),
                        ("dem65 ~ dem60", 0.837)):
        rows.append((f"regression: {term}", value, paths[term], 3))
    return compare(rows)


def summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per reference: comparisons, passed, failed, largest |difference| / tolerance."""
    rows = []
    for name, table in tables.items():
        ratio = (table["difference"].abs() / table["tolerance"]).max()
        rows.append({"reference": name, "comparisons": len(table),
                     "passed": int(table["passed"].sum()),
                     "failed": int((~table["passed"]).sum()),
                     "largest_difference_over_tolerance": float(np.round(ratio, 4))})
    return pd.DataFrame(rows)


def write(out_dir: str | Path, name: str, table: pd.DataFrame) -> Path:
    """Write one reference's comparison to ``<out_dir>/tables/<name>.csv``."""
    folder = Path(out_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    table.to_csv(path, index=False, lineterminator="\n")
    return path


def write_index(out_dir: str | Path, tables: dict[str, pd.DataFrame],
                failures: dict[str, str]) -> Path:
    """Write ``<out_dir>/index.html``: the summary, then each reference's comparison
    (the jinja2 template ``report/templates/reproduce.html.j2``)."""
    from markupsafe import Markup

    from alliance_analysis.report.page import STYLE, render

    out_dir = Path(out_dir)
    overview = summary(tables)
    ok = not failures and bool(len(overview)) and int(overview["failed"].sum()) == 0
    banner = ("Every published value was reproduced within its tolerance." if ok else
              "Some references were NOT reproduced: " + "; ".join(
                  f"{k}: {v}" for k, v in failures.items()))
    sections = [{"name": name, "table": Markup(table.assign(
        passed=table["passed"].map({True: "pass", False: "FAIL"})).to_html(
            index=False, border=0, float_format=lambda v: f"{v:.6g}"))}
        for name, table in tables.items()]
    page = render("reproduce.html.j2", style=Markup(STYLE), ok=ok, banner=banner,
                  overview=Markup(overview.to_html(index=False, border=0)), sections=sections)
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
