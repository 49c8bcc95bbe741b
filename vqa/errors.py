"""User errors: anything the user can fix (a missing file, malformed JSON, a bad config value, an unknown
image id) raises `UserError` with one line that names the file, key or id and says what to do; `vqa.cli`
prints it, or `os_error_line` of an OSError, and exits with code 2, no traceback."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class UserError(Exception):
    """An error the user can fix; its message is printed as one line, exit code 2."""


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
