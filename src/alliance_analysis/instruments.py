"""Questionnaire definitions as data.

An :class:`Instrument` says everything the workbench needs to know about a questionnaire to
check, score and interpret it: the item columns, the response range, the subscales, the
reverse-keyed items, the scoring and prorating rule, severity bands, the clinical cut-off and
the reliable-change threshold, each with the published source. No item wording is stored:
most of these questionnaires are copyrighted or licensed, and scoring does not need it.

The shipped definitions live in :data:`INSTRUMENTS`. A researcher defines a further
instrument (or overrides a shipped one, e.g. to add subscales) in the parameters file, without
touching code; :func:`get_instrument` looks a key up in both.

Examples
--------
>>> from alliance_analysis.instruments import get_instrument
>>> phq9 = get_instrument("phq9")
>>> phq9.items()[:3]
['phq9_1', 'phq9_2', 'phq9_3']
>>> phq9.total_range()
(0.0, 27.0)
>>> custom = {"cgi": {"name": "Clinical Global Impression", "construct": "outcome",
...                   "rater": "therapist", "n_items": 1, "item_min": 1, "item_max": 7,
...                   "scoring": "sum", "source": "Guy, W. (1976). ECDEU Assessment Manual."}}
>>> get_instrument("cgi", custom).score_column()
'cgi_total'
"""

import re
import warnings
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alliance_analysis.errors import AllianceParamsError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# The field name "construct" shadows the deprecated BaseModel.construct(); pydantic warns once
# at class creation. The name is part of the parameters-file format, so the warning is
# silenced here, for this class only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "construct"', category=UserWarning)

    class Instrument(BaseModel):
        """One questionnaire: its items, response range, scoring rule and interpretation.

        Item columns are named ``<key>_<n>`` for n = 1..`n_items`; scores are named
        ``<key>_total`` and ``<key>_<subscale>`` (see :meth:`score_column`). Item numbers in
        `subscales` and `reverse` are 1-based, as printed on the form.

        Scoring rule, applied by :mod:`alliance_analysis.data.scoring`: reverse-keyed items are
        first recoded as ``item_min + item_max - x``; the total is then the sum
        (``scoring="sum"``) or the mean (``scoring="mean"``) of the items. With
        `prorate_min_items` set, a total is still computed when at least that many items were
        answered: the mean of the answered items (``"mean"``), or that mean times `n_items`
        (``"sum"``, a *prorated* sum). With `prorate_min_items` None any missing item makes the
        total missing. With `rounding` set, every score is then rounded to `rounding_decimals`
        decimals, as some services' exports do: ``"half_even"`` sends a half to the even
        neighbour (a prorated PHQ-9 sum of 12.5 to 12, 13.5 to 14), as IEEE 754's default
        rounding and R's ``round()`` do; ``"half_up"`` sends it away from zero (12.5 to 13), as
        SPSS's ``RND()`` and Excel's ``ROUND`` do (sources:
        :func:`alliance_analysis.data.scoring.round_scores`). A researcher matching such an
        export states it under ``scoring:`` in the parameters. Every score prorated, left
        missing for too few items, or changed by rounding gets an entry in the cell ledger.

        `cutoff` is a boundary on the total whose direction follows `construct`: for
        ``"symptoms"`` and ``"outcome"`` a total at or above it marks clinical caseness; for
        ``"alliance"`` a total below it flags a possible problem in the alliance. `rci` is the
        published reliable-change threshold in total points (an improvement or deterioration of at
        least `rci` points is reliable), and `reliability` the coefficient it was derived from,
        where the source gives it.

        Build one from a plain mapping, e.g. a block of a YAML parameters file, with
        ``Instrument.model_validate(mapping)``; unknown keys are refused and the model is frozen.

        References
        ----------
        .. [1] Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
           to defining meaningful change in psychotherapy research. Journal of Consulting and
           Clinical Psychology, 59(1), 12-19.
        """

        model_config = ConfigDict(extra="forbid", frozen=True)

        key: str = Field(description="column prefix: items are <key>_1..<key>_<n_items>")
        name: str = Field(description="full name of the questionnaire")
        construct: Literal["alliance", "symptoms", "outcome"]
        rater: Literal["client", "therapist"]
        n_items: int = Field(ge=1)
        item_min: int = Field(description="lowest response value of every item")
        item_max: int = Field(description="highest response value of every item")
        integer_items: bool = Field(
            default=True, description="responses are whole numbers (Likert points); a "
            "fractional answer such as 2.5 is then a data error the cleaning stage handles "
            "(cleaning.fractional_items); false for continuous items")
        scoring: Literal["sum", "mean"]
        subscales: dict[str, list[int]] = Field(
            default_factory=dict, description="subscale name -> 1-based item numbers"
        )
        reverse: list[int] = Field(default_factory=list, description="1-based reverse-keyed items")
        prorate_min_items: int | None = Field(
            default=None, description="min answered items for a prorated total; None: no prorating"
        )
        rounding: Literal["none", "half_even", "half_up"] = Field(
            default="none", description="round every score to `rounding_decimals` decimals: "
            "'half_even' (a half to the even neighbour: IEEE 754's default, R's round()) or "
            "'half_up' (a half away from zero: SPSS's RND(), Excel's ROUND); 'none' keeps the "
            "exact score")
        rounding_decimals: int = Field(
            default=0, ge=0, le=6, description="decimals kept when `rounding` is set")
        bands: list[tuple[float, str]] = Field(
            default_factory=list, description="(lower bound of total, label), ascending"
        )
        cutoff: float | None = Field(default=None, description="clinical cut-off on the total")
        rci: float | None = Field(default=None, description="reliable change, in total points")
        reliability: float | None = Field(
            default=None, gt=0, lt=1, description="reliability the rci was derived with"
        )
        # The reliability the Jacobson-Truax index (change.reliable_change: jacobson_truax)
        # uses when change.reliability is not set and the source of `rci` gives none: a
        # published coefficient of the total, test-retest where the source reports one (as
        # Jacobson & Truax 1991 used), else internal consistency.
        rc_reliability: float | None = Field(
            default=None, gt=0, lt=1, description="published reliability r_xx of the total "
            "(test-retest where the source reports one, else Cronbach's alpha) used by the "
            "Jacobson-Truax reliable change index when change.reliability and `reliability` "
            "are not set"
        )
        rc_reliability_source: str | None = Field(
            default=None, description="the kind of coefficient behind `rc_reliability` and "
            "its citation, as captions print it: e.g. 'test-retest reliability (Kroenke, "
            "Spitzer & Williams, 2001)'"
        )
        source: str = Field(min_length=1, description="full citation(s)")

        @model_validator(mode="after")
        def _check(self) -> "Instrument":
            problems = self._problems()
            if problems:
                raise ValueError("; ".join(problems))
            return self

        def _problems(self) -> list[str]:
            """Every inconsistency between the fields, as readable sentences."""
            problems = []
            if not _NAME.match(self.key):
                problems.append(
                    f"key must be lower-case letters, digits and '_' starting with a letter "
                    f"(it prefixes column names); got {self.key!r}"
                )
            if self.item_min >= self.item_max:
                problems.append(
                    f"item_min must be below item_max; got {self.item_min} and {self.item_max}"
                )
            valid = range(1, self.n_items + 1)
            bad_reverse = sorted({i for i in self.reverse if i not in valid})
            if bad_reverse:
                problems.append(f"reverse items {bad_reverse} are outside 1..{self.n_items}")
            for name, numbers in self.subscales.items():
                if not _NAME.match(name) or name == "total":
                    problems.append(
                        f"subscale name {name!r} must be lower-case letters, digits and '_' "
                        f"starting with a letter, and not 'total'"
                    )
                bad = sorted({i for i in numbers if i not in valid})
                if bad:
                    problems.append(f"subscale {name!r} items {bad} are outside 1..{self.n_items}")
                if not numbers:
                    problems.append(f"subscale {name!r} has no items")
            if self.prorate_min_items is not None and self.prorate_min_items not in valid:
                problems.append(
                    f"prorate_min_items must be within 1..{self.n_items}; "
                    f"got {self.prorate_min_items}"
                )
            if self.item_min >= self.item_max:
                return problems  # the total range is undefined; range checks would mislead
            low, high = self.total_range()
            lows = [bound for bound, _ in self.bands]
            if lows != sorted(set(lows)):
                problems.append(f"band lower bounds must be strictly ascending; got {lows}")
            outside = [bound for bound in lows if not low <= bound <= high]
            if outside:
                problems.append(f"band lower bounds {outside} are outside the total range "
                                f"{low:g}..{high:g}")
            if self.cutoff is not None and not low <= self.cutoff <= high:
                problems.append(f"cutoff {self.cutoff:g} is outside the total range "
                                f"{low:g}..{high:g}")
            if self.rci is not None and not 0 < self.rci <= high - low:
                problems.append(f"rci {self.rci:g} must be above 0 and at most the width of "
                                f"the total range ({high - low:g})")
            return problems

        def items(self) -> list[str]:
            """Item column names, ``<key>_1`` .. ``<key>_<n_items>``."""
            return [f"{self.key}_{i}" for i in range(1, self.n_items + 1)]

        def subscale_items(self, name: str) -> list[str]:
            """Item column names of one subscale.

            Raises
            ------
            AllianceParamsError
                If the instrument has no subscale `name`; the message lists those it has.
            """
            self._require_subscale(name)
            return [f"{self.key}_{i}" for i in self.subscales[name]]

        def total_range(self) -> tuple[float, float]:
            """Lowest and highest possible total: the item range, times `n_items` if summed."""
            if self.scoring == "sum":
                return float(self.n_items * self.item_min), float(self.n_items * self.item_max)
            return float(self.item_min), float(self.item_max)

        def abbreviation(self) -> str:
            """The instrument's short name: the first parenthesised part of `name` (e.g.
            ``"PHQ-9"``), else the key in capitals."""
            match = re.search(r"\(([^()]+)\)", self.name)
            return match.group(1) if match else self.key.upper()

        def score_column(self, subscale: str | None = None) -> str:
            """Name of a score column: ``<key>_total``, or ``<key>_<subscale>`` for a subscale."""
            if subscale is None:
                return f"{self.key}_total"
            self._require_subscale(subscale)
            return f"{self.key}_{subscale}"

        def _require_subscale(self, name: str) -> None:
            if name not in self.subscales:
                known = ", ".join(sorted(self.subscales)) or "none (define them under 'subscales')"
                raise AllianceParamsError(
                    f"Instrument {self.key!r} has no subscale {name!r}. Its subscales: {known}."
                )


# Shipped definitions. Facts that could not be checked against the source are left empty
# (None / [] / {}) and say so, rather than guessed; a parameters file can fill them in.
_SHIPPED = (
    Instrument(
        key="wai",
        name="Working Alliance Inventory - Short Revised (WAI-SR), client form",
        construct="alliance",
        rater="client",
        n_items=12,
        item_min=1,
        item_max=5,
        scoring="mean",
        subscales={"goal": [4, 6, 8, 11], "task": [1, 2, 10, 12], "bond": [3, 5, 7, 9]},
        reverse=[],  # the WAI-SR is scored without reverse-keyed items
        # Project convention, not the authors' rule: score when >= 10 of 12 items answered.
        prorate_min_items=10,
        source=(
            "Hatcher, R. L., & Gillaspy, J. A. (2006). Development and validation of a revised "
            "short version of the Working Alliance Inventory. Psychotherapy Research, 16(1), "
            "12-25. https://doi.org/10.1080/10503300500352500"
        ),
    ),
    Instrument(
        key="wai_t",
        name="Working Alliance Inventory - Short Form (WAI-S), therapist version",
        construct="alliance",
        rater="therapist",
        n_items=12,
        item_min=1,
        item_max=7,
        scoring="mean",
        # Goal/Task/Bond item keys and the negatively worded items of the therapist short form
        # were not verified against Tracey & Kokotovic (1989): none are shipped. Enter them
        # from your copy of the form under `instruments:` in the parameters file.
        subscales={},
        reverse=[],
        # Project convention (as for "wai"), not the authors' rule: >= 10 of 12 answered.
        prorate_min_items=10,
        source=(
            "Tracey, T. J., & Kokotovic, A. M. (1989). Factor structure of the Working Alliance "
            "Inventory. Psychological Assessment, 1(3), 207-210. "
            "https://doi.org/10.1037/1040-3590.1.3.207; "
            "Horvath, A. O., & Greenberg, L. S. (1989). Development and validation of the "
            "Working Alliance Inventory. Journal of Counseling Psychology, 36(2), 223-233."
        ),
    ),
    Instrument(
        key="srs",
        name="Session Rating Scale (SRS)",
        construct="alliance",
        rater="client",
        n_items=4,
        item_min=0,
        item_max=10,  # each 10 cm visual analogue line, read to the nearest centimetre
        scoring="sum",
        cutoff=36,  # a total below 36 flags a possible problem in the alliance
        # No published reliable-change threshold was verified: rci and reliability left None.
        source=(
            "Duncan, B. L., Miller, S. D., Sparks, J. A., Claud, D. A., Reynolds, L. R., "
            "Brown, J., & Johnson, L. D. (2003). The Session Rating Scale: Preliminary "
            "psychometric properties of a \"working\" alliance measure. Journal of Brief "
            "Therapy, 3(1), 3-12."
        ),
    ),
    Instrument(
        key="phq9",
        name="Patient Health Questionnaire depression scale (PHQ-9)",
        construct="symptoms",
        rater="client",
        n_items=9,
        item_min=0,
        item_max=3,
        scoring="sum",
        # Project convention, not from Kroenke et al. (2001): prorate when >= 7 of 9 answered.
        prorate_min_items=7,
        bands=[(0, "minimal"), (5, "mild"), (10, "moderate"), (15, "moderately severe"),
               (20, "severe")],
        cutoff=10,  # caseness as used in IAPT
        rci=6,  # reliable change as used in IAPT
        # The reliability coefficient behind the IAPT threshold is not given in these sources.
        # Test-retest r = .84: PHQ-9 completed in clinic and by telephone with a mental
        # health professional within 48 hours (Kroenke et al. 2001; Cronbach's alpha
        # .89 in the PHQ Primary Care Study and .86 in the PHQ Obstetrics-Gynecology Study).
        rc_reliability=0.84,
        rc_reliability_source="test-retest reliability (Kroenke, Spitzer & Williams, 2001)",
        source=(
            "Kroenke, K., Spitzer, R. L., & Williams, J. B. W. (2001). The PHQ-9: Validity of a "
            "brief depression severity measure. Journal of General Internal Medicine, 16(9), "
            "606-613. https://doi.org/10.1046/j.1525-1497.2001.016009606.x; caseness (>= 10) "
            "and reliable change (>= 6 points) as used in IAPT: Clark, D. M. (2011). "
            "Implementing NICE guidelines for the psychological treatment of depression and "
            "anxiety disorders: The IAPT experience. International Review of Psychiatry, 23(4), "
            "318-327; NHS Digital, Psychological Therapies: Annual reports on the use of IAPT "
            "services."
        ),
    ),
    Instrument(
        key="gad7",
        name="Generalized Anxiety Disorder scale (GAD-7)",
        construct="symptoms",
        rater="client",
        n_items=7,
        item_min=0,
        item_max=3,
        scoring="sum",
        # Project convention, not from Spitzer et al. (2006): prorate when >= 6 of 7 answered.
        prorate_min_items=6,
        bands=[(0, "minimal"), (5, "mild"), (10, "moderate"), (15, "severe")],
        cutoff=8,  # caseness as used in IAPT
        rci=4,  # reliable change as used in IAPT
        # Test-retest intraclass correlation .83 (Spitzer et al. 2006; Cronbach's alpha .92).
        rc_reliability=0.83,
        rc_reliability_source=("test-retest reliability, an intraclass correlation (Spitzer, "
                               "Kroenke, Williams & Löwe, 2006)"),
        source=(
            "Spitzer, R. L., Kroenke, K., Williams, J. B. W., & Löwe, B. (2006). A brief measure "
            "for assessing generalized anxiety disorder: The GAD-7. Archives of Internal "
            "Medicine, 166(10), 1092-1097. https://doi.org/10.1001/archinte.166.10.1092; "
            "caseness (>= 8) and reliable change (>= 4 points) as used in IAPT: Clark, D. M. "
            "(2011), International Review of Psychiatry, 23(4), 318-327; NHS Digital, "
            "Psychological Therapies: Annual reports on the use of IAPT services."
        ),
    ),
    Instrument(
        key="core10",
        name="Clinical Outcomes in Routine Evaluation - 10 (CORE-10)",
        construct="outcome",
        rater="client",
        n_items=10,
        item_min=0,
        item_max=4,
        scoring="sum",
        reverse=[2, 3],
        # At most one missing item; the prorated total is the item mean times 10.
        prorate_min_items=9,
        # Severity bands are published in the CORE-10 user manual but were not verified here.
        cutoff=11,  # clinical range: total >= 11
        rci=6,  # reliable change index (90% CI) reported by Barkham et al. (2013)
        # Barkham et al. report alpha = .90; whether that value produced the RCI of 6 was not
        # verified, so reliability is left None.
        # The Jacobson-Truax index uses that alpha (.90, Barkham et al. 2013): internal
        # consistency, the coefficient the cited source gives for the CORE-10 total.
        rc_reliability=0.90,
        rc_reliability_source="internal consistency, Cronbach's alpha (Barkham et al., 2013)",
        source=(
            "Barkham, M., Bewick, B., Mullin, T., Gilbody, S., Connell, J., Cahill, J., "
            "Mellor-Clark, J., Richards, D., Unsworth, G., & Evans, C. (2013). The CORE-10: A "
            "short measure of psychological distress for routine use in the psychological "
            "therapies. Counselling and Psychotherapy Research, 13(1), 3-13. "
            "https://doi.org/10.1080/14733145.2012.729069"
        ),
    ),
    Instrument(
        key="tasc",
        name="Therapeutic Alliance Scale for Children - Revised (TASC-R), child form",
        construct="alliance",
        rater="client",
        n_items=12,
        item_min=1,
        item_max=4,
        scoring="mean",
        # The TASC mixes positively and negatively worded items, but which items are
        # negatively keyed could not be verified against Shirk & Saiz (1992) or the form
        # itself. A vendor's scoring page (Blueprint) lists items 2, 5, 7, 8 and 11 as
        # reverse-scored; check your copy of the form and set `reverse` in the parameters
        # file before scoring. Shipped empty rather than guessed.
        reverse=[],
        # Project convention (as for "wai"), not the authors' rule: >= 10 of 12 answered.
        prorate_min_items=10,
        source=(
            "Shirk, S. R., & Saiz, C. C. (1992). Clinical, empirical, and developmental "
            "perspectives on the therapeutic relationship in child psychotherapy. Development "
            "and Psychopathology, 4(4), 713-728; Creed, T. A., & Kendall, P. C. (2005). "
            "Therapist alliance-building behavior within a cognitive-behavioral treatment for "
            "anxiety in youth. Journal of Consulting and Clinical Psychology, 73(3), 498-505."
        ),
    ),
)

INSTRUMENTS: dict[str, Instrument] = {instrument.key: instrument for instrument in _SHIPPED}
"""The shipped instruments by key: wai, wai_t, srs, phq9, gad7, core10, tasc."""


def get_instrument(
    key: str, custom: Mapping[str, Instrument | Mapping[str, Any]] | None = None
) -> Instrument:
    """Look up an instrument by key, among custom definitions first, then the shipped ones.

    Parameters
    ----------
    key : str
        The instrument key, e.g. ``"wai"`` or ``"phq9"``.
    custom : mapping, optional
        Instruments defined in a parameters file: key -> :class:`Instrument` or a plain
        mapping of its fields (``key`` may be omitted; it is taken from the mapping key).
        A custom definition with the key of a shipped instrument replaces it, e.g. to add the
        subscales of ``wai_t``.

    Returns
    -------
    Instrument

    Raises
    ------
    AllianceParamsError
        If `key` is neither custom nor shipped (the message lists the known keys), or its
        custom definition is invalid (the message lists every problem).
    """
    custom = custom or {}
    if key in custom:
        return _from_custom(key, custom[key])
    if key in INSTRUMENTS:
        return INSTRUMENTS[key]
    known = ", ".join(sorted(set(INSTRUMENTS) | set(custom)))
    raise AllianceParamsError(
        f"Unknown instrument {key!r}. Known instruments: {known}. "
        f"Define a new one under 'custom_instruments:' in the parameters file."
    )


def _from_custom(key: str, definition: Instrument | Mapping[str, Any]) -> Instrument:
    """Validate one custom definition, naming the instrument in every error."""
    if isinstance(definition, Instrument):
        fields = definition.model_dump()
    elif isinstance(definition, Mapping):
        fields = {"key": key, **definition}
    else:
        raise AllianceParamsError(
            f"Instrument {key!r} must be a mapping of its fields; got {type(definition).__name__}."
        )
    if fields["key"] != key:
        raise AllianceParamsError(
            f"Instrument defined under {key!r} has key {fields['key']!r}; they must match."
        )
    try:
        return Instrument.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'definition'}: {err['msg']}"
            for err in exc.errors()
        )
        raise AllianceParamsError(f"Instrument {key!r} is invalid: {problems}.") from exc
