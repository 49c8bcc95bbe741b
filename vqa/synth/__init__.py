"""The built-in synthetic dataset (`vqa synth`): official-format JSON plus HDF5 features, in the
files of VQA v2 (default) or of VQA v1, OK-VQA, VizWiz-VQA or VQA-CP v2 (`--format`).

One job per module, in the order the data is made:
    presets.py     named sizes (tiny, small, paper, vqa2); pure Python, cheap to import
    formats.py     the formats' names and per-image question counts; pure Python too
    scenes.py      scenes of objects on a grid, and the seeded random helpers every module shares
    questions.py   question templates: parameters, wording, official question type, true answer
    ask.py         which questions each image gets: balanced answers, complementary pairs
    annotators.py  ten simulated annotators per question; the multiple-choice answer
    features.py    grid and box features (a fixed random encoder) written as HDF5
    vqa_files.py   the VQA v2 and v1 files (the default writer)
    okvqa.py, vizwiz.py, vqacp.py   each other dataset's annotators and files (VQA-CP: the re-split)
    stats.py       statistics of the written splits and the question-only prior
    render.py      optional PNG drawings of the scenes (`--render`)
    generate.py    generate() and `vqa synth`: ties the above together, writes every file atomically

Nothing is imported here, so `import vqa.synth.presets` stays light (no numpy, no h5py).
Layout of the written files: data/README.md, "Synthetic data".
"""
