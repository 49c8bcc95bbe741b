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
        super().__init__(from_worker(message, type(self)), *args)


def from_worker(message: object, kind: type) -> object:
    """The original message of an exception of type `kind` that torch re-raised from a DataLoader worker
    (its report: "Caught <kind> in DataLoader worker process N.", the worker's traceback, and last the
    line "<module.kind>: <message>"); any other message as it is."""
    if not (isinstance(message, str) and message.startswith(f"Caught {kind.__name__} in DataLoader worker")):
        return message
    last = message.rstrip().rsplit("\n", 1)[-1]
    for name in (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: "):
        if last.startswith(name):
            return last[len(name) :]
    return message


def os_error_line(e: OSError, training: bool = False) -> str:
    """One line for an OSError: the path, what the system said and, for a full disk, the free space."""
    line = f"{e.filename or 'a file'}: {e.strerror or from_worker(str(e), type(e))}"
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
