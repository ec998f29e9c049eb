"""Errors a user can act on: the CLI prints their message on one line and exits non-zero."""


class RecsysError(RuntimeError):
    """Bad input or state; the message names the value and the fix."""
