#!/usr/bin/env bash
# One device call for issue 19/21 (H200): pipeline throughput, the single-GPU step profile, then
# the active-learning grid until its deadline. Results come back as one tarball in $OUT.
#   bash bench/active_gpu.sh [GRID_DEADLINE_S] [PROCESSES]
# A later call resumes the grid: carry bench/results/gpu/active_experiment_grid/ (it holds the
# per-run state) and run this again, or just:
#   python -m active.grid run --out bench/results/gpu/active_experiment_grid --processes 10 --deadline-s 500
set -u
DEADLINE=${1:-240}
PROCS=${2:-12}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ARGUS_CACHE=/tmp/argus-cache
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/r19"
GRID=bench/results/gpu/active_experiment_grid
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv | tee "$OUT/r19/nvidia-smi.txt"
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
( timeout 120 python3 bench/active_scoring.py 2>&1 | tee "$OUT/r19/active_scoring.log" | cut -c1-400 ) || echo "active_scoring failed"
( timeout 60 python3 bench/step_profile.py --quick 2>&1 | tee "$OUT/r19/step_profile.log" | cut -c1-600 ) || echo "step_profile failed"
cp bench/results/gpu/active_scoring_gpu.json bench/results/gpu/step_profile_gpu.json "$OUT/r19/" 2>/dev/null
mkdir -p "$GRID"
timeout $((DEADLINE + 90)) python3 -m active.grid run --out "$GRID" --processes "$PROCS" --deadline-s "$DEADLINE" \
    2>&1 | tail -40 || echo "grid stopped"
nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/r19/nvidia-smi.txt"
tar czf "$OUT/r19.tgz" --exclude='ledger.csv' --exclude='locks' -C . "$GRID" -C "$OUT" r19
ls -la "$OUT"
