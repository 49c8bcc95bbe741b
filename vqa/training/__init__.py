"""Training: `fit(cfg)` (fit.py) wires the data, model, optimizer and loaders, then runs the epochs of
loop.py, logging with runlog.py and checkpointing with checkpoint.py; distributed.py is the DDP
plumbing and optim.py the optimizer and learning-rate schedule. Nothing outside this package imports
from it: the command line calls `vqa.training.fit.train_command`."""
