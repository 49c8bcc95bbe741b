"""Files, once for the whole package: atomic writes, strict JSON and checked output paths.

Atomic: every file the project writes goes to a fresh temporary beside the target and is renamed over
it only when complete and fsynced, so a kill at any moment leaves the old file or the new one, never a
torn one, and a failed write leaves no temporary file behind (`atomic_path`).

Strict JSON: a missing file, bytes that are not UTF-8, malformed JSON, NaN / Infinity (not JSON), or a
missing top-level key end in one UserError line naming the file and what to do. msgspec decodes and
encodes where it is faster (with the garbage collector paused: JSON has no reference cycles), and the
standard library decides, and words, whatever msgspec refuses (`loads`, `dumps`).
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from vqa.errors import UserError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale(folder: Path, name: str) -> None:
    """Remove temporaries of `name` that a killed write left in `folder` (`.NAME.<pid>.<random>.tmp`
    whose process is gone). A symlink or anything but a regular file under such a name is left alone
    (lstat: never followed)."""
    prefix = f".{name}."
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(TMP_SUFFIX)]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass


@contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; on success rename it over `path`, else remove it.

    For writers that want a file name (h5py, matplotlib, torch.save):
        with atomic_path(out) as tmp:
            h5py.File(tmp, "w") ...

    The temporary `.NAME.<pid>.<random>.tmp` is created exclusively (mkstemp: O_EXCL, so nothing planted
    under that name is written through), fsynced, then renamed over `path` (os.replace, atomic on POSIX:
    a symlink at `path` is replaced, never followed). Temporaries a killed write left behind are removed
    first (`_remove_stale`). `durable=True` also fsyncs the folder, so the rename survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path.parent, path.name)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what open() would have given the file
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:  # the rename, made durable
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except OSError as e:
        if e.filename is None:  # torch.save / h5py writing through a file object: name the target
            e.filename = str(path)
        raise
    finally:
        try:
            tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def append_line(path: str | Path, line: str) -> None:
    """Append one line to `path` (metrics.jsonl), never through a symlink planted at `path`."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    with open(fd, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = False) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, durable: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), durable)


def write_json_atomic(path: str | Path, obj, indent: int | None = None, durable: bool = False) -> None:
    """Strict JSON (NaN / Infinity refused: write None for a missing value) written atomically."""
    write_text_atomic(path, dumps(obj, indent) + ("\n" if indent is not None else ""), durable)


def dumps(obj, indent: int | None = None) -> str:
    """json.dumps(obj, indent=indent, allow_nan=False): NaN / Infinity refused (not JSON). The C encoder
    writes it compact (with an indent json.dumps runs the pure-Python encoder) and msgspec re-indents it
    (the standard library indents the rare text msgspec cannot parse)."""
    if isinstance(indent, int) and not isinstance(indent, bool) and indent > 0:
        compact = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        try:
            return msgspec.json.format(compact, indent=indent)
        except msgspec.MsgspecError:  # a lone surrogate escape, which msgspec does not parse
            pass
    return json.dumps(obj, indent=indent, allow_nan=False)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside: for decoding JSON (which holds no reference cycles) and for work on
    the decoded data that builds none, where the collector would walk the large heap again and again
    (2-3x the decoding time, 7x json.dumps of a 200k-entry dict beside a decoded VQA file)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes):
    """Strict JSON (NaN / Infinity refused) decoded by msgspec; anything msgspec refuses goes to the
    standard library, which raises its usual error (json.JSONDecodeError with line and column,
    UnicodeDecodeError, ValueError for NaN) or decodes it."""
    with gc_paused():
        try:
            try:
                return msgspec.json.decode(text)
            except msgspec.MsgspecError:
                pass
            return json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise ValueError("nested too deep (about 1,000 levels at most)") from None


@contextmanager
def mapped(path: str | Path) -> Iterator[mmap.mmap | None]:
    """The file mapped read-only, or None when it cannot be (missing, a folder, empty, ...); for
    decoding large files without copying them (a file truncated meanwhile ends the process: SIGBUS)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        yield None
        return
    with f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            yield None
            return
        with data:
            yield data


def read_json_as(path: str | Path, schema: type):
    """The file decoded straight into `schema` (a msgspec type: only the fields it names, checked), or
    None when the file cannot be read or does not match: the caller then takes the `read_json` path,
    whose checks name the problem. For the large official files `vqa eval` reads: the file is mapped,
    not copied (a file truncated while it is decoded would end the process with SIGBUS)."""
    with mapped(path) as data, gc_paused():
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=schema)
        except (msgspec.MsgspecError, RecursionError):
            return None


def read_json(
    path: str | Path, what: str = "JSON", key: str | None = None, key_type=list, hint="check the path"
):
    """The decoded JSON of `path` (or its `key` entry, checked to be a `key_type`), or a UserError line;
    `what` names the file's role in messages ("annotations"), `hint` what to do when it is missing."""
    path = Path(path)
    try:
        data = loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{what} file {path} not found; {hint}") from None
    except IsADirectoryError:
        raise UserError(f"{what} file {path} is a folder; pass the file itself") from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{what} file {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            "fix or regenerate it"
        ) from None
    except UnicodeDecodeError as e:
        raise UserError(
            f"{what} file {path} is not UTF-8 text (byte {e.start}); is it JSON? re-download or regenerate it"
        ) from None
    except ValueError as e:  # NaN / Infinity
        raise UserError(f"{what} file {path} is not strict JSON ({e}); fix or regenerate it") from None
    except OSError as e:
        raise UserError(f"cannot read {what} file {path} ({e.strerror}); check the path") from None
    if key is None:
        return data
    if not isinstance(data, dict) or not isinstance(data.get(key), key_type):
        raise UserError(
            f"{what} file {path} has no {key_type.__name__} under key '{key}'; use an official-format {what} file"
        )
    return data[key]


def read_jsonl(path: str | Path, what: str = "JSON lines") -> list[dict]:
    """One strict JSON object per non-empty line (metrics.jsonl); a bad line is named by number."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(loads(line))
        except ValueError as e:
            raise UserError(
                f"{what} file {path}: line {n} is not valid JSON ({e}); fix or delete the line"
            ) from None
    return rows


def refuse_inputs_as_outputs(outputs: list[tuple], inputs: list[tuple]) -> None:
    """Refuse, before any work, an output that is one of the command's inputs: the same file (same
    inode, also through a link or another spelling of the path), or a folder output holding an input
    folder. `outputs` and `inputs` are (what it is, path) pairs; None entries are ignored."""
    for option, out in outputs:
        if out is None or not os.path.lexists(out):
            continue
        for what, path in inputs:
            if path is None or not os.path.exists(path):
                continue
            try:
                same = os.path.samefile(out, path)
            except OSError:
                continue
            if same:
                raise UserError(
                    f"{option} {out} is the {what} this command reads; writing it would destroy its input: "
                    f"choose another {option.split()[0]}"
                )


def output_folder(path: str | Path, option: str) -> Path:
    """The folder an output goes into, created when missing; one UserError line when a file is in the
    way or the folder cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder; pass a folder")
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: the folder is not writable; choose another {option}")
    return path
