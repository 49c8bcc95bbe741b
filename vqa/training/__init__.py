"""Training: `fit(cfg)` (fit.py) wires the data, model, optimizer and loaders, then runs the epochs of
loop.py, logging with runlog.py and checkpointing with checkpoint.py; distributed.py is the DDP
plumbing and optim.py the optimizer and learning-rate schedule. Outside this package only two
modules are imported: the command line calls `vqa.training.fit.train_command`, and the benchmarks time
the loop through `vqa.training.timing.Steps` (tests/test_layering.py holds both)."""
