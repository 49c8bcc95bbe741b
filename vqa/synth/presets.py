"""Named sizes of the synthetic dataset (`vqa synth --preset`, `data.synth_preset` in configs).

Pure Python on purpose: configs and the command line (`--preset` takes the names of PRESETS, and each
of SIZE_KEYS is an option overriding a preset's value) read it without importing numpy.
"""

from __future__ import annotations

# fmt: off
PRESETS: dict[str, dict[str, int]] = {
    # Big enough that AVG beats the question-only prior in 2 epochs (tests), still ~1 s to write.
    "tiny": dict(train_images=400, val_images=100, test_images=20, questions_per_image=8,
                 grid_size=7, grid_dim=64, box_dim=64),
    "small": dict(train_images=3000, val_images=1000, test_images=200, questions_per_image=5,
                  grid_size=7, grid_dim=128, box_dim=128),
    # The paper's 14x14 grid; 2048 channels would not fit the disk budget (~3 GB here).
    "paper": dict(train_images=20000, val_images=5000, test_images=1000, questions_per_image=5,
                  grid_size=14, grid_dim=256, box_dim=512),
    # VQA v2's image counts (82,783 train / 40,504 val) and about its question counts (5 per image
    # against 5.4), with small features so it fits the disk: for memory-growth measurements.
    "vqa2": dict(train_images=82783, val_images=40504, test_images=0, questions_per_image=5,
                 grid_size=7, grid_dim=16, box_dim=32),
}
# fmt: on
SIZE_KEYS = tuple(PRESETS["small"])  # the sizes every preset sets, in this order
