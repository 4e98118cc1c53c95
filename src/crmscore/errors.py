"""Errors that the command line turns into one line and exit code 2.

Every problem a user can fix (a bad parameter, an unreadable file, a missing column, an unreachable
tracking server) is raised as a :class:`CrmscoreError` whose message is a single line naming the
file, the column or key, and the rule that was broken. The CLI prints that line and exits with code 2;
no traceback is shown, because the traceback would only hide the one line that matters.
"""

from __future__ import annotations


class CrmscoreError(Exception):
    """A user-facing error: one line, exit code 2 at the command line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep it to one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class SettingsError(CrmscoreError):
    """``params.yaml`` is missing, unreadable, or holds an unknown key, a wrong type or an impossible value."""


class DataError(CrmscoreError):
    """An input file cannot be used at all (unreadable, missing a required column, uncoercible type)."""


class TrackingError(CrmscoreError):
    """The MLflow tracking store cannot be reached or used."""


class FitError(CrmscoreError):
    """A model could not be fitted: the optimiser failed or the likelihood is not finite."""


class LockedError(CrmscoreError):
    """Another crmscore run is writing the same output folder (it holds the folder's lock); run again later."""
