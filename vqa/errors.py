"""User errors: anything the user can fix (a missing file, malformed JSON, a bad config value, an unknown
image id) raises `UserError` with one line that names the file, key or id and says what to do; `vqa.cli`
prints it, or `os_error_line` of an OSError, and exits with code 2, no traceback."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class UserError(Exception):
    """An error the user can fix; its message is printed as one line, exit code 2.

    One raised in a DataLoader worker reaches the main process as torch re-raises it: the same type built
    from torch's report ("Caught UserError in DataLoader worker process N." and the worker's traceback,
    whose last line is "vqa.errors.UserError: <message>"); the message is taken back out of that report,
    so a bad row found in a worker is still one line."""

    def __init__(self, message: object = "", *args):
        if isinstance(message, str) and message.startswith(
            f"Caught {type(self).__name__} in DataLoader worker"
        ):
            last = message.rstrip().rsplit("\n", 1)[-1]
            name = f"{type(self).__module__}.{type(self).__qualname__}: "
            message = last[len(name) :] if last.startswith(name) else message
        super().__init__(message, *args)


def os_error_line(e: OSError, training: bool = False) -> str:
    """One line for an OSError: the path, what the system said and, for a full disk, the free space."""
    line = f"{e.filename or 'a file'}: {e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and e.filename:
        folder = Path(e.filename)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            line += f" ({shutil.disk_usage(folder).free / 2**20:,.1f} MiB free there)"
        except OSError:
            pass
        line += "; free some space and run the command again"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        line += "; choose a folder you can write, or fix its permissions"
    else:
        line += "; check the path"
    return line + ("; the run resumes from its last checkpoint: vqa train --resume RUN" if training else "")
