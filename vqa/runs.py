"""The run folder: the one module through which every writer of a run finds, locks and replaces it.

A run is `<out_dir>/<name>/`. Its name is one path component (checked when a config loads), and the
folder must resolve inside out_dir (a symlinked run folder pointing elsewhere is refused). `vqa train`
holds an exclusive lock on `<run>/.lock` for its whole life (flock: the OS releases it when the process
dies, however it dies), so a second process on the same run is refused in one line. `--overwrite`
clears a folder only when it is recognisably a run of this tool (config.yaml beside nothing but what a
run writes, RUN_ENTRIES) and holds none of the command's inputs; otherwise nothing is touched. A
run's checkpoints are read back through `read_checkpoint`.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import os
import shutil
from pathlib import Path

from vqa.errors import UserError

NAME_MAX = 100  # characters of a run name (a file name may have 255 bytes; results names add to it)
LOCK = ".lock"
# What a run folder holds: every entry must match one of these for --overwrite to clear it.
RUN_FILES = ("config.yaml", "metrics.jsonl", LOCK, "train.log", "FAILED", "checkpoints", "steps")
RUN_ENTRIES = (*RUN_FILES, "events.out.tfevents.*", "predictions_*.json", "*results*.json", ".*.tmp")
CHECKPOINT_ENTRIES = ("*.pt", ".*.tmp")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a run folder (one path component, printable, bounded), or None."""
    if not name:
        return "it is empty"
    if len(name) > NAME_MAX:
        return f"it has {len(name)} characters (at most {NAME_MAX})"
    if "/" in name or "\\" in name or "\0" in name:
        return "it holds a path separator; a run name is one folder name (set out_dir for the folder above)"
    if name in (".", ".."):
        return "it names the folder itself or its parent"
    if name[0] in "-.":
        return f"it starts with '{name[0]}'"
    if not name.isprintable() or name != name.strip():
        return "it holds a control character or leading / trailing spaces"
    return None


def check_name(name: str, key: str = "name") -> None:
    problem = name_problem(name)
    if problem:
        raise UserError(
            f"config: '{key}' is {shown(name)}: {problem}; use letters, digits, '_', '-' or '.' (e.g. name=pool_soft)"
        )


def shown(value, limit: int = 200) -> str:
    """repr of a value for an error line, cut to `limit` characters."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_folder(out_dir: str | Path, name: str) -> Path:
    """`out_dir/name`, refused unless `name` is one component and the folder resolves inside out_dir."""
    check_name(name)
    folder = Path(out_dir) / name
    try:
        inside = folder.resolve().parent == Path(out_dir).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise UserError(f"run folder {folder}: cannot be resolved ({e}); check out_dir") from None
    if not inside:
        raise UserError(
            f"run folder {folder} resolves to {folder.resolve()}, outside out_dir {out_dir}; remove the link or "
            "choose another name="
        )
    return folder


def foreign_entry(folder: Path) -> str | None:
    """The first entry of `folder` that a run does not write (None: the folder holds only a run's files)."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        sub = entry.name in ("checkpoints", "steps")
        if not _matches(entry.name, RUN_ENTRIES):
            return entry.name
        if sub != entry.is_dir(follow_symlinks=False) or (entry.is_symlink()):
            return entry.name
        if sub:
            inner = CHECKPOINT_ENTRIES if entry.name == "checkpoints" else ("events.out.tfevents.*",)
            for e in os.scandir(entry.path):
                if e.is_symlink() or not e.is_file() or not _matches(e.name, inner):
                    return f"{entry.name}/{e.name}"
    return None


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and foreign_entry(folder) is None


def holds_run(folder: Path) -> bool:
    """True when the folder holds (part of) a run: what a new run must not silently replace."""
    return any((folder / f).exists() for f in ("config.yaml", "metrics.jsonl", "checkpoints"))


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def check_new(folder: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse a new run into `folder` (before anything is written): a folder holding other files, a run
    without --overwrite, or with --overwrite a folder that is not a run or that holds one of `inputs`."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"run folder {folder} is a file; choose another name= or out_dir=")
    other = foreign_entry(folder)
    if not holds_run(folder):
        if other is not None:
            raise UserError(
                f"run folder {folder} holds files that are not a run (e.g. {other}); nothing was touched; choose "
                "another name= or out_dir="
            )
        return  # empty, or only what a run writes before its config (a lock, train.log)
    if not overwrite:
        raise UserError(
            f"{folder} already holds a run; continue it with `vqa train --resume {folder}`, choose another "
            "name=..., or pass --overwrite to replace it"
        )
    for path in inputs:
        if _inside(path, folder):
            raise UserError(
                f"--overwrite would delete {path}, an input of this run, inside {folder}; nothing was touched; "
                "move it out of the run folder or choose another name="
            )
    if other is not None or not (folder / "config.yaml").is_file():
        raise UserError(
            f"--overwrite: {folder} is not only a run of vqa (it holds {other or 'no config.yaml'}); nothing "
            "was touched; move your files out or choose another name="
        )


def clear(folder: Path) -> None:
    """Remove a run's files (checked again: only a folder `is_run` accepts), keeping its lock file."""
    if not is_run(folder):
        raise UserError(f"--overwrite: {folder} is no longer only a run; nothing was removed")
    for entry in os.scandir(folder):
        if entry.name == LOCK:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def discard(folder: Path) -> None:
    """Remove a run folder that never wrote a checkpoint (nothing in it can be resumed); only what a
    run writes is removed, and a folder holding anything else is left as it is."""
    last = folder / "checkpoints" / "last.pt"
    if folder.is_dir() and not last.exists() and foreign_entry(folder) is None:
        shutil.rmtree(folder)


class RunLock:
    """An exclusive flock on `<run>/.lock` for as long as a process trains the run.

    Created with the folder (and out_dir) when needed; released by the OS when the process ends. On
    release, the folders this lock created are removed again when the run folder holds nothing but the
    lock file (a run refused before it wrote anything leaves nothing behind)."""

    def __init__(self, folder: Path):
        self.folder, self.fd, self.created = folder, None, []

    def acquire(self) -> RunLock:
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]  # deepest first
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self.fd)
            self.fd = None
            raise UserError(
                f"{self.folder} is being trained by another process{f' (pid {holder})' if holder else ''}; wait "
                "for it to finish or stop it, or choose another name="
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if self.created and [e.name for e in os.scandir(self.folder)] == [LOCK]:
                os.unlink(self.folder / LOCK)
                for folder in self.created:  # the run folder, then out_dir and above where this made them
                    os.rmdir(folder)
        except OSError:  # not empty (another run began there meanwhile): left as it is
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(folder: Path) -> bool:
    """True while a process holds the run's lock (`vqa paper --status`, and paper's skip of busy runs)."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# The keys every checkpoint of `vqa train` holds (vqa.training.checkpoint writes them).
RUN_CHECKPOINT_KEYS = ("model", "config", "question_vocab", "answer_vocab", "image_dim", "epoch")


def read_checkpoint(
    path: str | Path,
    hint: str = "pass a run folder written by `vqa train` (runs/<name>)",
    broken: str = "use the run's other checkpoint (--checkpoint last / best)",
) -> dict:
    """A run checkpoint, loaded with weights_only=True (a checkpoint file cannot run code), or one
    UserError line: missing, unreadable (torch's multi-line advice is never shown), or not a run's."""
    import torch  # here, not at the top: `vqa eval` and the command line never need torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file for the user
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}); {broken}") from None
    missing = [k for k in RUN_CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(
            f"{path}: not a `vqa train` checkpoint (no '{missing[0]}'); pass a run folder written by `vqa train`"
        )
    return state
