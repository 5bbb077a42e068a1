#!/usr/bin/env bash
# Reproducible training of Tessera's four synthetic models (em/ct x fullres/lowres).
#
#   tools/train/train-all.sh [all|data|train] [--device cpu|cuda] [--iters N] [--out DIR] [--seed S]
#
#   data   render training data into tools/train/data/{em,ct} (needs node + npm ci; git-ignored)
#   train  train + export the 4 models into models/ (python + torch only: runs on a GPU box
#          without node, given tools/train/data/ from a `data` run)
#   all    both (default)
#
# The full-res (stage-two) nets use batch norm, folded into their convs on export: canvases pack
# many crops side by side, and an instance-normalised net lets every crop change every other
# crop's output (0.2 % of voxels flipped on the EM bench); a folded net is a local operator, so a
# crop depends only on what lies within its receptive field (0.002 %). The low-res (stage-one)
# nets keep nnU-Net's instance norm: they run over plain tiles of the volume, never packed.
# CT sections drift in HU, which instance norm absorbed; the batch-norm CT net learns it from
# intensity augmentation (--aug-intensity; validation Dice 0.796 without, 0.851 with, 0.853 for
# the instance-norm net it replaces).
#
# --device cpu (default) uses a CPU profile: small patches and a few hundred iterations per
# model (about 35 minutes on 2 cores). --device cuda uses the full patch sizes and
# 2000 iterations per model. --iters N overrides the iteration count of every model.
# Python: $PYTHON if set, else /usr/bin/python3 when it has torch (Debian), else python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=all
device=cpu
iters=""
out=models
seed=0
while [ $# -gt 0 ]; do
  case "$1" in
    all|data|train) mode=$1 ;;
    --device) device=$2; shift ;;
    --iters) iters=$2; shift ;;
    --out) out=$2; shift ;;
    --seed) seed=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "train-all.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$device" in cpu|cuda) ;; *) echo "train-all.sh: --device cpu|cuda" >&2; exit 2 ;; esac

data_dir=tools/train/data

make_data() {
  for kind in em ct; do
    node --import tsx tools/train/make-data.ts --kind "$kind" --out "$data_dir/$kind"
  done
}

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then echo /usr/bin/python3; return; fi
  echo python3
}

train() {
  local py
  py=$(pick_python)
  for kind in em ct; do
    if [ ! -f "$data_dir/$kind/manifest.json" ]; then
      echo "train-all.sh: $data_dir/$kind/manifest.json missing: run 'tools/train/train-all.sh data' first (needs node)" >&2
      exit 1
    fi
  done
  # kind stage norm intensity-aug cpu-iters cpu-patch (cuda: default patch, 2000 iterations)
  while read -r kind stage norm aug cpu_iters cpu_patch; do
    local args=(--kind "$kind" --stage "$stage" --norm "$norm" --aug-intensity "$aug" --data "$data_dir/$kind" --out "$out" --device "$device" --seed "$seed")
    if [ "$device" = cpu ]; then
      args+=(--iters "${iters:-$cpu_iters}" --patch "$cpu_patch" --threads "${THREADS:-2}")
    else
      args+=(--iters "${iters:-2000}")
    fi
    echo "== $py tools/train/train.py ${args[*]}"
    "$py" tools/train/train.py "${args[@]}"
  done <<'EOF'
em fullres batch 0 1000 8,96,96
em lowres instance 0 600 16,64,64
ct fullres batch 0.7 1200 16,64,64
ct lowres instance 0 3000 16,48,48
EOF
}

case "$mode" in
  data) make_data ;;
  train) train ;;
  all) make_data; train ;;
esac
