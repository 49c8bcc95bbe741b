"""The one exception type for user errors.

Anything the user can fix (a missing file, malformed JSON, a bad config value, an
unknown image id) raises `UserError` with one line that names the file, key or id
and says what to do. `vqa.cli` prints that line and exits with code 2; no traceback.
"""


class UserError(Exception):
    """An error the user can fix; its message is printed as one line, exit code 2."""
