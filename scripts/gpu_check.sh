#!/usr/bin/env bash
# GPU check, meant to finish in under 5 minutes on one H200:
#   1. nvidia-smi, the driver and torch's CUDA build; stops with one line when they cannot work together
#   2. tests/test_gpu.py: every model in bf16 with unequal question lengths and mcb_dim 1000; all four
#      through `vqa train` in bf16 and fp16; a resume with the CUDA RNG; DDP with NCCL on every GPU
#      (skipped with one GPU); torch.compile; feature extraction and the memory probe on the GPU
#   3. timed epochs: one POOL epoch (grid) and one UpDn epoch (boxes) in bf16 on the synthetic `vqa2`
#      preset's sizes, capped to TRAIN_IMAGES training images (default 20,000 of VQA v2's 82,783:
#      100,000 questions) so that generating it fits the budget; samples/s and peak GPU memory
#   4. where the epoch time goes: one POOL epoch (grid) and one UpDn epoch (boxes) on real-size features
#      (14 x 14 x 2048 grids, 2048-d boxes, FEED_IMAGES training images, default 2,000) for each
#      data.preload (none, ram, device), capped at FEED_BATCHES batches (default 200; 0: the whole epoch),
#      against the model-only rate (the model fed one batch already on the GPU): vqa.bench.pipeline.epoch_rates
#   5. a one-screen summary to paste into a note (also written to $OUT/summary.txt)
#
#   scripts/gpu_check.sh                      (installs into .venv first when needed)
#   TRAIN_IMAGES=82783 VAL_IMAGES=40504 scripts/gpu_check.sh   (the full preset: well over 5 minutes)
#   DRY=1 PY=python scripts/gpu_check.sh      (no GPU: only step 4, on the CPU, tiny data and model under $OUT)
# The benchmarks are separate: .venv/bin/vqa bench --out bench/gpu --precision bf16
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-bench/gpu}
TRAIN_IMAGES=${TRAIN_IMAGES:-20000}
VAL_IMAGES=${VAL_IMAGES:-4000}
LOADER=${LOADER:-"data.num_workers=8"}  # the loader settings of the timed epochs (pinned memory and
                                        # persistent workers come with num_workers > 0 on CUDA)
read -ra LOADER_ARGS <<< "$LOADER"
FEED_IMAGES=${FEED_IMAGES:-2000}
FEED_BATCHES=${FEED_BATCHES:-200}
FEED_WORKERS=${FEED_WORKERS:-8}
DRY=${DRY:-0}  # 1: step 4 only, on the CPU, with the tiny preset and a small model (checks this script)
PY=${PY:-.venv/bin/python}
START=$(date +%s)
mkdir -p "$OUT"
TESTS_RC=0
EPOCHS_RC=0

if [ "$DRY" != 1 ]; then
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA device: nothing to check (nvidia-smi finds no GPU on this machine)"
    exit 1
fi
nvidia-smi
if ! "$PY" -c "import torch, vqa" 2>/dev/null; then
    make -s install || exit 1
fi

echo "== driver and torch"
"$PY" - "$OUT/env.txt" <<'PY' || exit 1
import re, subprocess, sys
import torch

smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
driver = (re.search(r"Driver Version:\s*([\d.]+)", smi) or [None, "?"])[1]
driver_cuda = (re.search(r"CUDA Version:\s*([\d.]+)", smi) or [None, "?"])[1]
built = torch.version.cuda
cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
env = (f"driver {driver} (CUDA up to {driver_cuda}); torch {torch.__version__} "
       f"(CUDA {built}, cuDNN {cudnn}, archs {' '.join(torch.cuda.get_arch_list())})")
print(env)

def stop(why: str) -> None:
    print(f"gpu_check: {why}")
    sys.exit(1)

if built is None:
    stop(f"torch {torch.__version__} is a CPU-only build: install a CUDA build of torch into .venv")
if driver_cuda != "?" and int(built.split(".")[0]) > int(driver_cuda.split(".")[0]):
    stop(f"torch {torch.__version__} is built for CUDA {built} but driver {driver} supports CUDA up to "
         f"{driver_cuda}: update the driver or install a torch build for CUDA {driver_cuda.split('.')[0]}.x")
try:
    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    x = torch.ones(64, 64, device="cuda")
    (x @ x).sum().item()  # cuBLAS
    torch.nn.functional.conv2d(x[None, None], torch.ones(2, 1, 3, 3, device="cuda")).sum().item()  # cuDNN
except Exception as e:  # noqa: BLE001 - any failure here means this torch cannot use this GPU
    stop(f"torch {torch.__version__} (CUDA {built}) cannot run on this GPU with driver {driver} "
         f"(CUDA up to {driver_cuda}): {str(e).strip().splitlines()[0]}")
gpus = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
        for i in range(torch.cuda.device_count())]
with open(sys.argv[1], "w") as f:
    f.write(f"GPUs: {len(gpus)} x {gpus[0]}\n{env}\n")
PY

echo "== GPU-marked tests"
"$PY" -m pytest -q -m gpu tests/test_gpu.py -rsfE --durations=8 2>&1 | tee "$OUT/tests.log"
TESTS_RC=${PIPESTATUS[0]}

echo "== timed epochs: POOL and UpDn, bf16, synthetic vqa2 sizes with $TRAIN_IMAGES training images"
"$PY" - "$OUT" "$TRAIN_IMAGES" "$VAL_IMAGES" "${LOADER_ARGS[@]}" <<'PY' 2>&1 | tee "$OUT/epochs.log"
import json, shutil, sys, time
from pathlib import Path

import torch

from vqa.cli import main
from vqa.synth.generate import generate
from vqa.synth.presets import PRESETS

out, train_images, val_images, loader = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
root = Path(f"data/synthetic/vqa2-{train_images}-{val_images}")  # kept: a second check reuses it
if not (root / "stats.json").exists():
    start = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    generate(root, seed=0, quiet=True, **{**PRESETS["vqa2"], "train_images": train_images, "val_images": val_images})
    print(f"generated {root} in {time.perf_counter() - start:.0f}s")
lines = []
for model, features in (("pool", "grid"), ("updn", "boxes")):
    runs = out / "runs"
    shutil.rmtree(runs / model, ignore_errors=True)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    rc = main(["train", "--config", f"configs/synthetic/{model}_soft.yaml", f"data.root={root}",
               "data.synth_preset=", f"out_dir={runs}", f"name={model}", "train.epochs=1",
               "train.precision=bf16", "train.device=cuda", *loader])
    wall = time.perf_counter() - start
    if rc != 0:
        lines.append(f"{model}: vqa train failed (exit {rc})")
        continue
    m = json.loads((runs / model / "metrics.jsonl").read_text().splitlines()[-1])
    peak = torch.cuda.max_memory_allocated() / 2**30
    lines.append(f"{model:5s} {features:5s} bf16: {m['throughput/samples_per_s']:,.0f} samples/s "
                 f"(train {m['seconds']:.1f}s; {wall:.0f}s with data loading and validation), "
                 f"peak GPU memory {peak:.2f} GiB, val accuracy {m['val/accuracy']:.2f}%")
(out / "epochs.txt").write_text(
    f"timed epochs ({train_images:,} train / {val_images:,} val images, 5 questions each; "
    f"batch 64; {' '.join(loader)}):\n" + "".join(f"  {line}\n" for line in lines))
print("".join(f"{line}\n" for line in lines), end="")
sys.exit(any("failed" in line for line in lines))
PY
EPOCHS_RC=${PIPESTATUS[0]}
fi  # DRY

echo "== where the epoch time goes: each data.preload against the model-only rate"
"$PY" - "$OUT" "$DRY" "$FEED_IMAGES" "$FEED_BATCHES" "$FEED_WORKERS" <<'PY' 2>&1 | tee "$OUT/feed.log"
import sys
from pathlib import Path

from vqa.bench.loader import REAL, ensure_real_size
from vqa.bench.pipeline import epoch_lines, epoch_rates

out, dry, images, batches, workers = Path(sys.argv[1]), sys.argv[2] == "1", *map(int, sys.argv[3:])
if dry:  # the CPU, the tiny preset under $OUT, a small model: the script's Python runs, the numbers mean nothing
    from vqa.synth.generate import generate
    from vqa.synth.presets import PRESETS

    root, device, precision, small = out / "feed-data", "cpu", "fp32", ("model.rnn_dim=32", "model.hidden_dim=32")
    batches, workers = min(batches or 6, 6), min(workers, 1)
    if not (root / "stats.json").exists():
        generate(root, seed=0, quiet=True, **PRESETS["tiny"])
else:
    root, device, precision, small = Path(f"data/synthetic/realsize-{images}"), "cuda", "bf16", ()
    ensure_real_size(root, images)  # kept: a second check reuses it
lines = [f"epochs per preload ({'DRY RUN on the CPU, tiny data' if dry else f'real-size features {REAL}, {images:,} images'}):"]
for model, features in (("pool", "grid"), ("updn", "boxes")):
    r = epoch_rates(root, model, features, device, precision, num_workers=workers, max_batches=batches, overrides=small)
    lines += ["  " + line for line in epoch_lines(r)]
(out / "feed.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
FEED_RC=${PIPESTATUS[0]}

{
    echo "==================== gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - START ))s) ===================="
    [ -f "$OUT/env.txt" ] && cat "$OUT/env.txt"
    echo "git $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    if [ "$DRY" != 1 ]; then
        echo "tests/test_gpu.py: $(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$OUT/tests.log" | tail -1 | tr -d '=')"
        grep -E '^(FAILED|ERROR|SKIPPED) ' "$OUT/tests.log" | cut -c1-150
    fi
    if [ "$DRY" = 1 ]; then echo "DRY=1: steps 1-3 skipped (no GPU)"
    elif [ -f "$OUT/epochs.txt" ] && [ "$EPOCHS_RC" = 0 ]; then cat "$OUT/epochs.txt"
    else echo "timed epochs: failed (see $OUT/epochs.log)"; fi
    if [ -f "$OUT/feed.txt" ] && [ "$FEED_RC" = 0 ]; then cat "$OUT/feed.txt"; else echo "epochs per preload: failed (see $OUT/feed.log)"; fi
} | tee "$OUT/summary.txt"
[ "$TESTS_RC" = 0 ] && [ "$EPOCHS_RC" = 0 ] && [ "$FEED_RC" = 0 ]
