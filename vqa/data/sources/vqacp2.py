"""VQA-CP v2 (Agrawal et al. 2018): VQA v2's questions re-split so that answer priors differ.

Files: vqacp_v2_{train,test}_{questions,annotations}.json, each a bare JSON list (no "questions" /
"annotations" wrapper); every entry carries `coco_split` (train2014 or val2014), the COCO folder
and so the feature file of its image. There is no val split: results are reported on test, whose
annotations are public (no server); the configs choose the epoch on a part of train held out by
image (data.val_split: heldout, vqa/data/heldout.py) and score test once at it (data.test_split).
"""

from vqa.data.sources.base import Layout, Source, Split
from vqa.data.sources.vqa_format import read_vqa_format

VQACP2 = Source(
    name="vqacp2",
    title="VQA-CP v2",
    questions="vqacp_v2_{split}_questions.json",
    answers="vqacp_v2_{split}_annotations.json",
    splits={
        "train": Split(None, annotated=True),
        "test": Split(
            None,
            annotated=True,
            server="VQA-CP has no evaluation server: its test annotations are public, score it with "
            "`vqa eval --source vqacp2`",
        ),
    },
    read=read_vqa_format,
    results_name="vqacp_v2_{split}_{name}_results.json",
    layout=Layout(wrapped=False),
    image_groups=("train2014", "val2014"),
)
