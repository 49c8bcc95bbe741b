"""The output folder of `vqa synth`, replaced as a whole.

The dataset is written as a whole: into a hidden sibling folder `.<out>.tmp`, which replaces `out`
only when complete (rename the old folder aside to `.<out>.old`, rename the new one in, remove the
old). A kill at any moment leaves `out` entirely old or entirely new, never a mix; the next run
removes a stale `.tmp` (and puts back an `.old` a kill left without `out`). So that nothing of the
user's is replaced with it, `out` must be new, empty or a dataset `vqa synth` wrote.
"""

from __future__ import annotations

import os
import shutil
from fnmatch import fnmatch
from pathlib import Path

from vqa.errors import UserError

# What a dataset folder written by generate() holds, in any format (and the temporary files of an
# interrupted write)
DATASET_NAMES = tuple(
    "v2_OpenEnded_mscoco_*_questions.json v2_mscoco_*_annotations.json OpenEnded_mscoco_*_questions.json "
    "mscoco_*_annotations.json vqacp_v2_*.json train.json val.json test.json scenes_*.json features_*.h5 "
    "stats.json images .*.tmp".split()
)


def _resolve(out: Path) -> Path:
    """The folder `out` names (through a symlink), refused when it is a file, a symlink loop or holds
    the current folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out}: exists and is not a folder; pass another path to --out")
    try:
        real = out.resolve()  # a symlinked folder is replaced where it lives; the link stays
    except RuntimeError:  # a symlink loop
        raise UserError(
            f"output folder {out}: a symlink loop; remove the link or pass another folder"
        ) from None
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise UserError(
            f"output folder {out}: holds the current folder, and vqa synth replaces the output folder as a "
            "whole; pass a new folder to --out (e.g. data/synthetic/small)"
        )
    return real


def stage(out: Path) -> tuple[Path, Path, Path]:
    """(the real folder, the temporary folder the dataset is written into, where the old one is put
    aside during the swap), after checking `out` and cleaning what an earlier kill left."""
    real = _resolve(out)
    tmp, old = real.with_name(f".{real.name}.tmp"), real.with_name(f".{real.name}.old")
    try:
        if old.exists():  # a kill during the swap: put the old dataset back, or drop it if the new is in
            if real.exists():
                shutil.rmtree(old)
            else:
                os.replace(old, real)
        shutil.rmtree(tmp, ignore_errors=True)  # a stale copy of a killed run
        if real.is_dir():
            foreign = sorted(
                p.name for p in real.iterdir() if not any(fnmatch(p.name, n) for n in DATASET_NAMES)
            )
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise UserError(
                    f"output folder {out}: holds {len(foreign)} files or folders that are not part of a synthetic dataset "
                    f"({shown}), and vqa synth replaces the folder as a whole; pass a new or empty folder to "
                    "--out, or move those files out"
                )
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise UserError(
            f"output folder {out}: cannot write {e.filename or real.parent} ({e.strerror}); pass another "
            "path to --out (the dataset is written beside it first, then swapped in)"
        ) from None
    return real, tmp, old


def swap_in(tmp: Path, real: Path, old: Path) -> None:
    """Replace `real` by the complete `tmp`: two renames (the old folder aside, the new one in), then
    the old one is removed."""
    if real.exists():
        os.replace(real, old)
        os.replace(tmp, real)
        shutil.rmtree(old)
    else:
        os.replace(tmp, real)
