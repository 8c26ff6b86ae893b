"""Exception and warning types raised to users of the workbench.

Every error a researcher can cause (a bad parameters file, a malformed data file) is one of
these, with a message that names the file, key, row, column or value and says what to do; the
command line prints the message without a traceback and exits with status 2.
"""


class AllianceError(Exception):
    """Base class of the workbench's own errors."""


class AllianceParamsError(AllianceError):
    """A parameters file is missing, malformed, or has an unknown key or a wrong value."""


class AllianceDataError(AllianceError):
    """A data file cannot be read or holds values the workbench cannot use."""


class NotEstimableError(AllianceDataError):
    """The data cannot identify a model (one therapist, one client, no variance, collinear
    terms): the analyses flag that model as not estimable and the run goes on."""


class AllianceRunError(AllianceError):
    """A pipeline run stopped: a notebook failed, or a run folder cannot be written."""


class ConvergenceWarning(UserWarning):
    """A model fit did not converge, or converged to a singular or boundary solution."""
