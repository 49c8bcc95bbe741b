"""VQA v1, real images (Antol et al. 2015): the VQA v2 format without the v2_ prefix.

Files (visualqa.org/vqa_v1_download.html): OpenEnded_mscoco_{split}_questions.json for train2014,
val2014, test-dev2015, test2015; mscoco_{split}_annotations.json for train2014 and val2014
(248,349 / 121,512 / 244,302 questions). The MultipleChoice_* question files add 18 candidates
per question; only the open-ended task is read. Results file name: as VQA v2's.
"""

from vqa.data.sources.base import Source, Split
from vqa.data.sources.vqa_format import read_vqa_format

VQA1 = Source(
    name="vqa1",
    title="VQA v1",
    questions="OpenEnded_mscoco_{split}_questions.json",
    answers="mscoco_{split}_annotations.json",
    splits={
        "train2014": Split("train2014", annotated=True),
        "val2014": Split("val2014", annotated=True),
        "test-dev2015": Split(
            "test2015",
            annotated=False,
            server="test-dev questions only: for the Test-Dev phase of the VQA v1 server",
        ),
        "test2015": Split(
            "test2015",
            annotated=False,
            size=244_302,
            server="the complete test file: for the Test-Standard phase, the accuracy papers report",
        ),
    },
    read=read_vqa_format,
    results_name="vqa_OpenEnded_mscoco_{split}_{name}_results.json",
)
