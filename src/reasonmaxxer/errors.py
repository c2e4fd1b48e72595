"""The one exception type the CLI turns into a single error line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a missing file, a malformed line, an unknown name, a bad value.

    The CLI prints ``error: <message>`` and exits with status 2, never a traceback.
    """
