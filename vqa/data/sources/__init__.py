"""Dataset sources: one file per dataset of the VQA family, registered here by explicit import.

`data.source` in a config (or `vqa eval --source`) names one; `get_source` refuses an unknown name
with the valid ones. A source knows its files and split table, reads a split into Records (the
common form), and names its results files (vqa/data/sources/base.py says what a source holds).
Adding a dataset: a source file, its configs, its fixture (tests/fixtures/<name>_tiny) and its
section of data/README.md; the line below registers it.
"""

from vqa.data.sources.base import Source, Split
from vqa.data.sources.okvqa import OKVQA
from vqa.data.sources.records import Record, Records
from vqa.data.sources.vizwiz import VIZWIZ
from vqa.data.sources.vqa1 import VQA1
from vqa.data.sources.vqa2 import VQA2
from vqa.data.sources.vqacp2 import VQACP2
from vqa.errors import UserError

SOURCES: dict[str, Source] = {}
for _source in (VQA2, VQA1, VQACP2, VIZWIZ, OKVQA):
    if _source.name in SOURCES:
        raise ValueError(f"two sources are named {_source.name}")
    SOURCES[_source.name] = _source


def get_source(name: str) -> Source:
    """The source named `name`, or a UserError listing the valid names."""
    if name not in SOURCES:
        raise UserError(f"unknown data source '{name}'; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


__all__ = ["SOURCES", "Record", "Records", "Source", "Split", "get_source"]
