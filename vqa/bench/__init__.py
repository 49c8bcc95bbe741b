"""`make bench`: speed and memory figures, each measured as a ratio within one run (absolute timings on
a shared 2-core machine are noise; two implementations timed back to back are not). One file per
topic, each with its benchmark and its Markdown; measure.py holds the shared timers and memory probes;
main.py runs a selection and writes bench/results.{json,md}.

    vqa bench [--out bench] [--only losses,models,...] [--quick] [--precision bf16]
    python -m vqa.bench ...   (the same)
"""
