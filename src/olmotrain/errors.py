"""User-facing errors: one readable line, non-zero exit, no traceback."""


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""
