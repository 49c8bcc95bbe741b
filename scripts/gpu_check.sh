#!/usr/bin/env bash
# GPU check, under 5 minutes on one CUDA GPU: the GPU-marked tests, then every model's
# forward+backward benchmark in bf16 and the pipeline efficiency (HDF5 from disk vs in memory).
#   scripts/gpu_check.sh            (installs into .venv first when needed)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install
PY=.venv/bin/python
$PY - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check: no CUDA device visible"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
echo "== GPU-marked tests"
$PY -m pytest -q -m gpu tests/test_gpu.py
echo "== models in bf16 at the synthetic paper sizes, and the pipeline"
$PY -m vqa bench --out bench/gpu --only losses,models,mcb,pipeline --precision bf16
