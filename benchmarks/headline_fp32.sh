#!/usr/bin/env bash
# The float32 headline rows of issue 13 on the default task, three seeds each.
#   bash benchmarks/headline_fp32.sh [WORK]        (default WORK: runs)
# This script runs the steps one after another (~5 h on one core). On 2026-12-07 the same
# commands ran two at a time by hand on a 2-core CPU, one thread each: GRPO beside the
# ReasonMaxxer seeds, then the gate runs beside the last seed, then the held-out evals.
# Seed i = 0, 1, 2 moves sampling (42 + i), selection and training (i) together. Base greedy
# eval does not depend on the seed: each run folder gets seed 42's copy and its stage record,
# so it skips that stage. The paper's gate (entropy top 10%) reuses each seed's rollouts and
# entropies, so it differs from the default in selection and training only. Every command
# resumes where it stopped.
set -euo pipefail
W=${1:-runs}
mkdir -p "$W/seeds" "$W/heldout"
rm_() { reasonmaxxer run --threads 1 "$@"; }
share() {  # share DEST SRC STAGE...: SRC's record of each STAGE in DEST/stages.json, so `run`
  # skips it there (its key is the same: no seed enters eval_base, and the gate folders sample
  # with their source's settings); a folder that has started is left alone
  python - "$@" <<'PY'
import json, sys
from pathlib import Path
dest, src, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
if not (dest / "config.yaml").exists():
    have = json.loads((src / "stages.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "stages.json").write_text(json.dumps({n: have[n] for n in names}, indent=1))
PY
}

# 1. The race (seed 42, rounds 1-2) and GRPO (60 min), side by side: benchmarks/vs_grpo.py runs
#    `reasonmaxxer run --out $W/vs/rm --rounds 2 --threads 1` and `reasonmaxxer grpo ...` itself
python benchmarks/vs_grpo.py --work "$W/vs" --out benchmarks/results/vs_grpo_fp32 \
    --grpo-minutes 60 --rounds 2 --grpo-args '--threads 1' --rm-args '--threads 1'

# 2. Seeds 43 and 44 of the default with two rounds
for i in 1 2; do
  s=$((42 + i)); d=$W/seeds/s$s
  share "$d" "$W/vs/rm" eval_base
  mkdir -p "$d/eval"; [ -d "$d/eval/base" ] || cp -r "$W/vs/rm/eval/base" "$d/eval/base"
  rm_ --out "$d" --rounds 2 --set sample.seed=$s --set select.seed=$i --set train.seed=$i
done

# 3. The paper's gate on each seed's rollouts
for i in 0 1 2; do
  s=$((42 + i)); src=$([ $i = 0 ] && echo "$W/vs/rm" || echo "$W/seeds/s$s"); d=$W/seeds/gate10_s$s
  share "$d" "$src" eval_base sample
  mkdir -p "$d/eval"; [ -d "$d/eval/base" ] || cp -r "$W/vs/rm/eval/base" "$d/eval/base"
  for f in rollouts.jsonl sample.json entropies.jsonl; do [ -f "$d/$f" ] || cp "$src/$f" "$d/"; done
  rm_ --out "$d" --set sample.seed=$s --set select.seed=$i --set train.seed=$i \
      --set select.gate=entropy --set select.top_frac=0.1
done

# 4. The same 500 problems in wordings no training style uses (arith style=heldout)
ev() {
  [ -f "$W/heldout/$1/results.json" ] && return
  reasonmaxxer eval --config "$W/vs/rm/config.yaml" --threads 1 --k 1 \
      --benchmarks arith:level=2,n=500,split=eval,style=heldout --out "$W/heldout/$1" "${@:2}"
}
ev base
ev grpo_s0 --adapter "$W/vs/grpo/adapter"
for s in 42 43 44; do
  r=$([ $s = 42 ] && echo "$W/vs/rm" || echo "$W/seeds/s$s")
  ev default_s$s --adapter "$r/adapter"
  ev round2_s$s --adapter "$r/round2/adapter"
  ev gate10_s$s --adapter "$W/seeds/gate10_s$s/adapter"
done

# 5. The tables (benchmarks/results/headline_fp32/): on the eval problems the run evaluates
#    (in-domain: the training style) and on the held-out wordings, each method against the base,
#    then rounds, the paper's gate and GRPO against the default (Holm over each table's pairs)
R=("$W/vs/rm" "$W/seeds/s43" "$W/seeds/s44")
G=("$W/seeds/gate10_s42" "$W/seeds/gate10_s43" "$W/seeds/gate10_s44")
inner() {  # the method groups on the run's own eval
  echo --group default "${R[0]}/eval/adapter" "${R[1]}/eval/adapter" "${R[2]}/eval/adapter"
  echo --group round2 "${R[0]}/round2/eval/adapter" "${R[1]}/round2/eval/adapter" \
      "${R[2]}/round2/eval/adapter"
  echo --group paper_gate "${G[0]}/eval/adapter" "${G[1]}/eval/adapter" "${G[2]}/eval/adapter"
  echo --group grpo "$W/vs/grpo/eval_full"
}
outer() {  # the same on the held-out wordings
  for m in default round2; do
    echo --group $m "$W/heldout/${m}_s42" "$W/heldout/${m}_s43" "$W/heldout/${m}_s44"
  done
  echo --group paper_gate "$W/heldout/gate10_s42" "$W/heldout/gate10_s43" "$W/heldout/gate10_s44"
  echo --group grpo "$W/heldout/grpo_s0"
}
B=$W/vs/rm/eval/base
H=benchmarks/results/headline_fp32
# shellcheck disable=SC2046  # the groups split into words on purpose
{
  python benchmarks/compare_evals.py --out $H/vs_base.json --against base \
      --group base "$B" "$B" "$B" $(inner)
  python benchmarks/compare_evals.py --out $H/vs_default.json --against default $(inner)
  python benchmarks/compare_evals.py --out $H/heldout_vs_base.json --against base \
      --group base "$W/heldout/base" "$W/heldout/base" "$W/heldout/base" $(outer)
  python benchmarks/compare_evals.py --out $H/heldout_vs_default.json --against default $(outer)
}
