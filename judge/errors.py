"""The one exception type for problems a user can fix."""


class UserError(Exception):
    """Bad input or settings. The message says what is wrong and how to fix it.

    Commands print it on one line and exit with code 2, never with a traceback.
    """
