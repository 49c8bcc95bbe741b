"""`make bench`: speed and memory figures, each measured as a ratio within one run.

Absolute timings on a shared 2-core machine are noise; ratios of two implementations timed
back to back in the same process are not. One file per topic (losses, eval, models + mcb,
pipeline, memory), each with its benchmark and the Markdown that shows it; measure.py holds the
timers and memory probes they share; main.py runs a selection and writes bench/results.{json,md}.

    vqa bench [--out bench] [--only losses,models,...] [--quick] [--precision bf16]
    python -m vqa.bench ...   (the same)
"""
