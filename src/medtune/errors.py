"""User-facing errors: the CLI prints the message (no traceback) and exits non-zero."""


class MedtuneError(Exception):
    """A problem the user can fix (bad input, missing file, bad config)."""

    exit_code = 2


class RankStopped(MedtuneError):
    """Under several processes: rank 0 failed at a step the others were waiting for (distributed.on_main);
    rank 0 reports the failure itself."""
