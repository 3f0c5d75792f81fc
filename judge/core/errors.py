"""The one exception type for problems a user can fix."""


class UserError(Exception):
    """Bad input or settings. The message says what is wrong and how to fix it.

    Commands print it on one line and exit with code 2, never with a traceback.
    """


def cut(value: object, width: int = 40) -> str:
    """A value's text for a one-line message, cut to ``width`` characters (a 1 MB label stays short)."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."
