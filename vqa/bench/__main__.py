"""`python -m vqa.bench [options]`: the same as `vqa bench [options]` (Makefile, scripts/gpu_check.sh)."""

import sys

from vqa.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
