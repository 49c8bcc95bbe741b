"""VQA v2 (Goyal et al. 2017), and the synthetic data, which `vqa synth` writes in its format.

Files (docs/vqa-reference.md section 4): v2_OpenEnded_mscoco_{split}_questions.json for
train2014, val2014, test-dev2015, test2015; v2_mscoco_{split}_annotations.json for train2014 and
val2014. test-dev images are part of test2015, so test-dev2015 reads features_test2015.h5. Results
go to the EvalAI server, which scores every phase from the complete test2015 file.
"""

from vqa.data.sources.base import Source, Split
from vqa.data.sources.vqa_format import read_vqa_format

# What each test file is for on the evaluation server (EvalAI, which hosts the VQA Challenge). Its
# refusal of a partial file reads: "you need to upload predictions on ALL test questions for test-dev
# evaluation unlike previous years when you needed to upload predictions on test-dev questions only".
TEST = (
    "the complete file: upload it to any EvalAI phase (Test-Dev, Test-Standard, Test-Challenge); "
    "each scores its own part, and papers report the Test-Standard accuracy"
)
TEST_DEV = (
    "test-dev questions only: EvalAI refuses it in every phase, Test-Dev included, and it gives no "
    "test-standard accuracy; submit the test2015 file (vqa predict --split test2015)"
)

VQA2 = Source(
    name="vqa2",
    title="VQA v2",
    questions="v2_OpenEnded_mscoco_{split}_questions.json",
    answers="v2_mscoco_{split}_annotations.json",
    splits={
        "train2014": Split("train2014", annotated=True),
        "val2014": Split("val2014", annotated=True),
        "test-dev2015": Split("test2015", annotated=False, server=TEST_DEV, size=107_394),
        "test2015": Split("test2015", annotated=False, server=TEST, size=447_793),
    },
    read=read_vqa_format,
    results_name="vqa_OpenEnded_mscoco_{split}_{name}_results.json",
)

# Split -> the image folder its images (and so its features) belong to, where the two differ.
IMAGE_SUBTYPE = {name: split.images for name, split in VQA2.splits.items() if split.images != name}
