"""User-facing errors: the CLI prints the message (no traceback) and exits non-zero."""


class MedtuneError(Exception):
    """A problem the user can fix (bad input, missing file, bad config)."""

    exit_code = 2
