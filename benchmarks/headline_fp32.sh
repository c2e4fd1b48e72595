#!/usr/bin/env bash
# The float32 headline rows of issue 13 on the default task, three seeds each.
#   bash benchmarks/headline_fp32.sh [WORK]        (default WORK: runs)
# This script runs the steps one after another (~9 h on one core, three of them GRPO, and
# ~4 h more for step 6's 14 gate arms). On
# 2026-12-07 the same commands ran two or three at a time by hand on a 2-core CPU, one thread
# each: GRPO beside the ReasonMaxxer seeds, then the gate runs beside the last seed, then the
# round-2 anchor runs, GRPO seeds 1 and 2 and the held-out evals.
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

# 2. Seeds 43 and 44 with two rounds, round 2 anchored to the base (the default until
#    2026-12-07; step 1's race ran that way too)
for i in 1 2; do
  s=$((42 + i)); d=$W/seeds/s$s
  share "$d" "$W/vs/rm" eval_base
  mkdir -p "$d/eval"; [ -d "$d/eval/base" ] || cp -r "$W/vs/rm/eval/base" "$d/eval/base"
  rm_ --out "$d" --rounds 2 --round-anchor base \
      --set sample.seed=$s --set select.seed=$i --set train.seed=$i
done

# 2b. Round 2 anchored to round 1's policy (the default since 2026-12-07), on a copy of each
#     seed's folder: round 1, round 2's policy, rollouts and selection are skipped as done
#     (their stage keys do not include the anchor); round 2 trains and evaluates again. The
#     committed numbers ran π_ref forward every step (code at 6d9d7c5); since 2026-12-07 round 2
#     takes π_ref's log-probs from its selection instead (the same model scored it).
for i in 0 1 2; do
  s=$((42 + i)); src=$([ $i = 0 ] && echo "$W/vs/rm" || echo "$W/seeds/s$s")
  d=$W/ablate/previous$([ $i = 0 ] || echo "_s$s")
  if [ ! -d "$d" ]; then
    mkdir -p "$W/ablate"; cp -r "$src" "$d"
    (cd "$d/round2" && rm -rf adapter train_checkpoint eval train.json train_log.jsonl round.json)
    rm -f "$d/manifest.json"
  fi
  rm_ --out "$d" --rounds 2 --round-anchor previous \
      --set sample.seed=$s --set select.seed=$i --set train.seed=$i
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

# 3b. GRPO seeds 1 and 2: step 1's GRPO config (its config.yaml), the step count fixed at the
#     73 steps seed 0 made in its 60-minute budget (two to three jobs shared the 2 cores, so a
#     time budget would give each seed another step count), then the race's full eval
for s in 1 2; do
  g=$W/grpo_seeds/s$s
  [ -f "$g/manifest.json" ] || reasonmaxxer grpo --config "$W/vs/grpo/config.yaml" --out "$g" \
      --seed $s --max-steps 73 --max-minutes none --threads 1
  [ -f "$g/eval_full/results.json" ] || reasonmaxxer eval --config "$W/vs/rm/config.yaml" \
      --k 1 --threads 1 --adapter "$g/adapter" --out "$g/eval_full"
done

# 4. The same 500 problems in wordings no training style uses (arith style=heldout)
ev() {
  [ -f "$W/heldout/$1/results.json" ] && return
  reasonmaxxer eval --config "$W/vs/rm/config.yaml" --threads 1 --k 1 \
      --benchmarks arith:level=2,n=500,split=eval,style=heldout --out "$W/heldout/$1" "${@:2}"
}
ev base
ev grpo_s0 --adapter "$W/vs/grpo/adapter"
for s in 1 2; do ev grpo_s$s --adapter "$W/grpo_seeds/s$s/adapter"; done
for s in 42 43 44; do
  r=$([ $s = 42 ] && echo "$W/vs/rm" || echo "$W/seeds/s$s")
  p=$W/ablate/previous$([ $s = 42 ] || echo "_s$s")
  ev default_s$s --adapter "$r/adapter"
  ev round2_s$s --adapter "$r/round2/adapter"
  ev previous_s$s --adapter "$p/round2/adapter"
  ev gate10_s$s --adapter "$W/seeds/gate10_s$s/adapter"
done

# 5. The tables (benchmarks/results/headline_fp32/): on the eval problems the run evaluates
#    (in-domain: the training style) and on the held-out wordings, each method against the base,
#    against one round, and against the default (two rounds, round 2 anchored to round 1's
#    policy); Holm over each table's pairs
R=("$W/vs/rm" "$W/seeds/s43" "$W/seeds/s44")
P=("$W/ablate/previous" "$W/ablate/previous_s43" "$W/ablate/previous_s44")
G=("$W/seeds/gate10_s42" "$W/seeds/gate10_s43" "$W/seeds/gate10_s44")
GR=("$W/vs/grpo" "$W/grpo_seeds/s1" "$W/grpo_seeds/s2")
inner=(  # the method groups on the run's own eval
  --group rounds1 "${R[0]}/eval/adapter" "${R[1]}/eval/adapter" "${R[2]}/eval/adapter"
  --group rounds2_base "${R[0]}/round2/eval/adapter" "${R[1]}/round2/eval/adapter"
  "${R[2]}/round2/eval/adapter"
  --group default "${P[0]}/round2/eval/adapter" "${P[1]}/round2/eval/adapter"
  "${P[2]}/round2/eval/adapter"
  --group paper_gate "${G[0]}/eval/adapter" "${G[1]}/eval/adapter" "${G[2]}/eval/adapter"
  --group grpo "${GR[0]}/eval_full" "${GR[1]}/eval_full" "${GR[2]}/eval_full"
)
outer=()  # the same on the held-out wordings
for m in default:rounds1 round2:rounds2_base previous:default gate10:paper_gate grpo:grpo; do
  prefix=${m%%:*}; group=${m#*:}; runs=(s42 s43 s44)
  [ "$prefix" = grpo ] && runs=(s0 s1 s2)
  outer+=(--group "$group")
  for r in "${runs[@]}"; do outer+=("$W/heldout/${prefix}_$r"); done
done
B=$W/vs/rm/eval/base
HB=$W/heldout/base
H=benchmarks/results/headline_fp32
for against in base rounds1 default; do
  extra=(); [ $against = base ] && extra=(--group base "$B" "$B" "$B")
  python benchmarks/compare_evals.py --out "$H/vs_$against.json" --against $against \
      "${extra[@]}" "${inner[@]}"
  extra=(); [ $against = base ] && extra=(--group base "$HB" "$HB" "$HB")
  python benchmarks/compare_evals.py --out "$H/heldout_vs_$against.json" --against $against \
      "${extra[@]}" "${outer[@]}"
done

# 6. The gate calibration on seed 42's rollouts (benchmarks/results/gates_tau/, gates_frac/):
# each entropy gate beside a random gate of the same share, and --preset paper; one variant per
# process (two ran at a time by hand), then every pair in one table
for spec in gates_tau gates_frac; do
  variants=$(python -c "import sys, yaml; print(*yaml.safe_load(open(sys.argv[1]))['variants'])" \
      "benchmarks/specs/$spec.yaml")
  for v in $variants; do
    python benchmarks/sweep.py "benchmarks/specs/$spec.yaml" --out "$W/$spec" \
        --seed-from "$W/vs/rm" --only "$v"
  done
  python benchmarks/sweep.py "benchmarks/specs/$spec.yaml" --out "$W/$spec" --table-only
done
python benchmarks/gate_pairs.py --out benchmarks/results/gates_frac/pairs.json \
  --pair "top 10%" "$W/seeds/gate10_s42" "$W/gates_frac/random-top10" \
  --pair "top 20%" "$W/gates_frac/entropy-top20" "$W/gates_frac/random-top20" \
  --pair "top 30%" "$W/gates_frac/entropy-top30" "$W/gates_frac/random-top30" \
  --pair "τ 2.0" "$W/gates_tau/entropy-tau2.0" "$W/gates_tau/random-0.270" \
  --pair "τ 1.4" "$W/gates_tau/entropy-tau1.4" "$W/gates_tau/random-0.408" \
  --pair "τ 1.0" "$W/gates_tau/entropy-tau1.0" "$W/gates_tau/random-0.528" \
  --pair "τ 0.5" "$W/gates_tau/entropy-tau0.5" "$W/gates_tau/random-0.696" \
  --single "all tokens (gate: all)" "$W/vs/rm"

# 7. A third round and round 2 as a fresh LoRA on the merged policy, on copies of seed 42's
# default folder (step 2b), each with its held-out-wording eval; the race with rounds 1-3
# (benchmarks/results/vs_grpo_fp32_rounds3/)
mkdir -p "$W/rounds3" "$W/vs_r3"
for d in r3 merged; do
  [ -e "$W/rounds3/$d" ] || cp -a "$W/ablate/previous" "$W/rounds3/$d"
done
rm_ --out "$W/rounds3/r3" --rounds 3
rm_ --out "$W/rounds3/merged" --rounds 2 --round-from merged
held=(eval --config "$W/vs/rm/config.yaml" --k 1 --threads 1
      --benchmarks arith:level=2,n=500,split=eval,style=heldout)
[ -f "$W/heldout/round3_s42/results.json" ] || reasonmaxxer "${held[@]}" \
    --adapter "$W/rounds3/r3/round3/adapter" --out "$W/heldout/round3_s42"
[ -f "$W/heldout/merged_s42/results.json" ] || reasonmaxxer "${held[@]}" \
    --model "$W/rounds3/merged/round2/policy" --adapter "$W/rounds3/merged/round2/adapter" \
    --out "$W/heldout/merged_s42"
ln -sfn ../vs/grpo "$W/vs_r3/grpo"
ln -sfn ../rounds3/r3 "$W/vs_r3/rm"
python benchmarks/vs_grpo.py --work "$W/vs_r3" --out benchmarks/results/vs_grpo_fp32_rounds3 \
  --grpo-minutes 60 --rounds 3 --grpo-args '--threads 1' --rm-args '--threads 1'
# ... and round 3 of seeds 43 and 44 (copies of step 2b's folders), against two rounds and GRPO
for i in 1 2; do
  s=$((42 + i)); d=$W/rounds3/r3_s$s
  [ -e "$d" ] || cp -a "$W/ablate/previous_s$s" "$d"
  rm_ --out "$d" --rounds 3 --round-anchor previous \
      --set sample.seed=$s --set select.seed=$i --set train.seed=$i
  [ -f "$W/heldout/round3_s$s/results.json" ] || reasonmaxxer "${held[@]}" \
      --adapter "$d/round3/adapter" --out "$W/heldout/round3_s$s"
done
R3=(); H3=(); for s in "" _s43 _s44; do R3+=("$W/rounds3/r3$s/round3/eval/adapter"); done
for s in 42 43 44; do H3+=("$W/heldout/round3_s$s"); done
O=benchmarks/results/vs_grpo_fp32_rounds3
python benchmarks/compare_evals.py --out $O/seeds_vs_default.json --against default \
  --group default "${P[0]}/round2/eval/adapter" "${P[1]}/round2/eval/adapter" \
  "${P[2]}/round2/eval/adapter" --group rounds3 "${R3[@]}"
python benchmarks/compare_evals.py --out $O/heldout_seeds_vs_default.json --against default \
  --group default "$W/heldout/previous_s42" "$W/heldout/previous_s43" "$W/heldout/previous_s44" \
  --group rounds3 "${H3[@]}"
python benchmarks/compare_evals.py --out $O/seeds_vs_grpo.json --against rounds3 \
  --group rounds3 "${R3[@]}" --group grpo "${GR[0]}/eval_full" "${GR[1]}/eval_full" \
  "${GR[2]}/eval_full"
python benchmarks/compare_evals.py --out $O/heldout_seeds_vs_grpo.json --against rounds3 \
  --group rounds3 "${H3[@]}" --group grpo "$W/heldout/grpo_s0" "$W/heldout/grpo_s1" \
  "$W/heldout/grpo_s2"
python benchmarks/compare_evals.py --out $O/seeds_vs_base.json --against base \
  --group base "$B" "$B" "$B" --group rounds3 "${R3[@]}"
python benchmarks/compare_evals.py --out $O/heldout_seeds_vs_base.json --against base \
  --group base "$HB" "$HB" "$HB" --group rounds3 "${H3[@]}"
