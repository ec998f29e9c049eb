"""Errors a user can act on: the CLI prints their message on one line and exits non-zero."""


class RecsysError(RuntimeError):
    """Bad input or state; the message names the value and the fix."""


def first_line(e: BaseException) -> str:
    """The first line of an error's message; for a Py4J error, of the Java exception behind it."""
    lines = str(getattr(e, "java_exception", e)).strip().splitlines()
    return lines[0] if lines else type(e).__name__
