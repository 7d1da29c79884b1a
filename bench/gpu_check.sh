#!/usr/bin/env bash
# The GPU check, prepared to run on a lent GPU machine without a package registry:
#
#   bash bench/gpu_check.sh correctness   # pytest -m gpu (about 4 minutes on an H200)
#   bash bench/gpu_check.sh speed         # olmotrain vs plain olmo-core, dd_1b and dd_150m
#   bash bench/gpu_check.sh dry-run       # on a CPU: everything but the GPU work (the kit
#                                         # installs, the imports, the test selection, the plans)
#
# It installs the kit (`make gpu-kit`: .gpu-kit/wheels) into a temporary site dir over the
# machine's own torch, uses the embedded bpe8k data carried with the tree
# (data/embedded/embedded_bpe8k), and writes everything it measures, as JSON and logs, under
# $OUT (default bench/results/gpu-<time>). The device call carries: .gpu-kit and
# data/embedded/embedded_bpe8k.
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-correctness}"
OUT="${OUT:-bench/results/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ "$part" = dry-run ] && PY=.venv/bin/python

if [ ! -f .gpu-kit/requirements.txt ]; then
  echo "error: no .gpu-kit here: run \`make gpu-kit\` on a machine with PyPI, and carry .gpu-kit" >&2
  exit 2
fi
SITE="$(mktemp -d)/site"
target=()
# On the CPU dry run (another Python) the 3.12 wheels are installed as for 3.12, not imported.
[ "$part" = dry-run ] && target=(--python-version 3.12 --only-binary=:all: --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip install -q --no-index --no-deps --find-links .gpu-kit/wheels --target "$SITE" \
  "${target[@]}" -r .gpu-kit/requirements.txt 2>&1 | tee "$OUT/install.log"
[ "$part" = dry-run ] || export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export OLMOTRAIN_DATA_ROOT="$PWD/data" PYTHONUNBUFFERED=1

"$PY" - > "$OUT/device.json" <<'EOF'
import json, platform, torch
from olmotrain.model.attention_probe import sdpa_kernel
from olmotrain.plan.cost import device_peak_flops
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name() if cuda else "cpu"
peak, source = device_peak_flops(name) if cuda else (None, "cpu")
print(json.dumps({
    "device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
    "python": platform.python_version(), "peak_flops": peak, "peak_source": source,
    "sdpa_kernel_head64": sdpa_kernel("cuda" if cuda else "cpu", 64),
    "sdpa_kernel_head128": sdpa_kernel("cuda" if cuda else "cpu", 128),
}))
EOF
cat "$OUT/device.json"

case "$part" in
  correctness)
    "$PY" -m pytest -m gpu -q -rs -s -p no:cacheprovider tests/test_gpu.py tests/test_train_e2e.py \
      --junitxml "$OUT/correctness.xml" 2>&1 | tee "$OUT/correctness.log"
    ;;
  speed)
    # dd_1b at sequence 2048, bf16, compile on: autocast (today's one-GPU default) and FSDP bf16
    # parameters with fp32 reduction (olmo-core's 1B benchmark setting), each against plain
    # olmo-core with the same settings, alternated; then dd_150m.
    common=(--no-eval --no-cli --rounds 2 --steps 30 --skip 10 --seq 2048)
    "$PY" bench/overhead.py --model dd_1b --batch 1048576 --compile "${common[@]}" \
      --json-out "$OUT/speed-dd_1b-autocast.json" 2>&1 | tee "$OUT/speed-dd_1b-autocast.log"
    "$PY" bench/overhead.py --model dd_1b --batch 1048576 --compile --fsdp "${common[@]}" \
      --json-out "$OUT/speed-dd_1b-fsdp.json" 2>&1 | tee "$OUT/speed-dd_1b-fsdp.log"
    "$PY" bench/overhead.py --model dd_150m --batch 524288 --compile "${common[@]}" \
      --json-out "$OUT/speed-dd_150m.json" 2>&1 | tee "$OUT/speed-dd_150m.log"
    ;;
  dry-run)
    "$PY" -m pytest -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_train_e2e.py --collect-only -q \
      2>&1 | tee "$OUT/correctness-selection.log"
    for model in dd_1b dd_150m; do
      "$PY" train.py model=$model train.sequence_length=2048 parallel.compile=true \
        cluster.device_type=h200 dry_run=json > "$OUT/plan-$model.json"
    done
    echo "dry run: kit installed, device probe and plans in $OUT"
    ;;
  *)
    echo "error: unknown part '$part': correctness, speed or dry-run" >&2
    exit 2
    ;;
esac
echo "gpu check ($part): results in $OUT"
