"""The works the generated methods text, the manuscript and the table notes cite.

:data:`REFERENCES` holds each work's full APA reference by its short citation;
:func:`cited_references` picks those a text cites, so that a reference list names only what
was used.
"""

from __future__ import annotations

import re

#: Full references of the works the paragraph cites, by short citation.
REFERENCES = {
    "Bates et al., 2015": "Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting "
    "linear mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.",
    "Curran & Bauer, 2011": "Curran, P. J., & Bauer, D. J. (2011). The disaggregation of "
    "within-person and between-person effects in longitudinal models of change. Annual Review "
    "of Psychology, 62, 583-619.",
    "Falkenström et al., 2017": "Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & "
    "Holmqvist, R. (2017). Dynamic models of individual change in psychotherapy process "
    "research. Journal of Consulting and Clinical Psychology, 85(6), 537-549.",
    "Hamaker et al., 2015": "Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A "
    "critique of the cross-lagged panel model. Psychological Methods, 20(1), 102-116.",
    "Rosseel, 2012": "Rosseel, Y. (2012). lavaan: An R package for structural equation "
    "modeling. Journal of Statistical Software, 48(2), 1-36.",
    "Jacobson & Truax, 1991": "Jacobson, N. S., & Truax, P. (1991). Clinical significance: A "
    "statistical approach to defining meaningful change in psychotherapy research. Journal of "
    "Consulting and Clinical Psychology, 59(1), 12-19.",
    "Tang & DeRubeis, 1999": "Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical "
    "sessions in cognitive-behavioral therapy for depression. Journal of Consulting and "
    "Clinical Psychology, 67(6), 894-904.",
    "Simonsohn et al., 2020": "Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). "
    "Specification curve analysis. Nature Human Behaviour, 4, 1208-1214.",
    "Stiles et al., 2004": "Stiles, W. B., Glick, M. J., Osatuke, K., Hardy, G. E., Shapiro, D. "
    "A., Agnew-Davies, R., Rees, A., & Barkham, M. (2004). Patterns of alliance development "
    "and the rupture-repair hypothesis. Journal of Counseling Psychology, 51(1), 81-92.",
    "Baldwin et al., 2007": "Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling "
    "the alliance-outcome correlation. Journal of Consulting and Clinical Psychology, 75(6), "
    "842-852.",
    "Seabold & Perktold, 2010": "Seabold, S., & Perktold, J. (2010). statsmodels: Econometric "
    "and statistical modeling with Python. Proceedings of the 9th Python in Science "
    "Conference, 92-96.",
    "Kuznetsova et al., 2017": "Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. "
    "(2017). lmerTest package: Tests in linear mixed effects models. Journal of Statistical "
    "Software, 82(13), 1-26.",
    "Igolkina & Meshcheryakov, 2020": "Igolkina, A. A., & Meshcheryakov, G. (2020). semopy: A "
    "Python package for structural equation modeling. Structural Equation Modeling, 27(6), "
    "952-963.",
    "Chen, 2007": "Chen, F. F. (2007). Sensitivity of goodness of fit indexes to lack of "
    "measurement invariance. Structural Equation Modeling, 14(3), 464-504.",
    "Hu & Bentler, 1999": "Hu, L., & Bentler, P. M. (1999). Cutoff criteria for fit indexes in "
    "covariance structure analysis: Conventional criteria versus new alternatives. Structural "
    "Equation Modeling, 6(1), 1-55.",
    "Lutz et al., 2013": "Lutz, W., Ehrlich, T., Rubel, J., Hallwachs, N., Röttger, M.-A., "
    "Jorasz, C., Mocanu, S., Vocks, S., Schulte, D., & Tschitsaz-Stucki, A. (2013). The ups "
    "and downs of psychotherapy: Sudden gains and sudden losses identified with session "
    "reports. Psychotherapy Research, 23(1), 14-24.",
    "McDonald, 1999": "McDonald, R. P. (1999). Test theory: A unified treatment. Lawrence "
    "Erlbaum.",
    "Mulder & Hamaker, 2021": "Mulder, J. D., & Hamaker, E. L. (2021). Three extensions of the "
    "random intercept cross-lagged panel model. Structural Equation Modeling, 28(4), 638-648.",
    "Reise, 2012": "Reise, S. P. (2012). The rediscovery of bifactor measurement models. "
    "Multivariate Behavioral Research, 47(5), 667-696.",
}


def cited_references(text: str) -> list[str]:
    """The full references of the works ``text`` cites, in alphabetical order.

    A work counts as cited when its first author's surname and its year both appear, as in
    ``(Bates et al., 2015)`` or ``Jacobson and Truax (1991)``.
    """
    cited = []
    for short, reference in REFERENCES.items():
        surname, year = short.split(",")[0].split(" ")[0], short.rsplit(" ", 1)[-1]
        if re.search(rf"\b{re.escape(surname)}\b[^()]*?\(?{year}", text):
            cited.append(reference)
    return sorted(cited)
