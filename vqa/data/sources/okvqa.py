"""OK-VQA (Marino et al. 2019): VQA v1 file names and layout, outside-knowledge questions.

Files (okvqa.allenai.org): OpenEnded_mscoco_{train2014,val2014}_questions.json and
mscoco_{train2014,val2014}_annotations.json (9,009 / 5,046 questions), no test split. Five
annotators each answered once and every answer is listed twice (answer_id 1..10), so the ten-answer
accuracy applies unchanged; each answer also carries a `raw_answer` (unused) and there is no
`multiple_choice_answer`: the most common answer stands in for it. Results are scored locally.
"""

from vqa.data.sources.base import Layout, Source, Split
from vqa.data.sources.vqa_format import read_vqa_format

OKVQA = Source(
    name="okvqa",
    title="OK-VQA",
    questions="OpenEnded_mscoco_{split}_questions.json",
    answers="mscoco_{split}_annotations.json",
    splits={"train2014": Split("train2014", annotated=True), "val2014": Split("val2014", annotated=True)},
    read=read_vqa_format,
    results_name="okvqa_{split}_{name}_results.json",
    layout=Layout(multiple_choice_answer=False),
)
