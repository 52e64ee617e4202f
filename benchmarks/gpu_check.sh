#!/usr/bin/env bash
# One-shot GPU check, for a GPU machine lent for a few minutes: the GPU test tier
# (pytest -m gpu tests/gpu), then benchmarks/bench_stats.py for the llama-1b and llama-8b shapes
# in bfloat16 on CUDA (with --write-docs). Everything is teed to files in $OUT (default
# /tmp/crane-lens-gpu-check): env.txt, pytest.txt, bench-llama-1b.txt, bench-llama-8b.txt,
# summary.txt and performance.md, whose GPU blocks
# `python benchmarks/bench_stats.py --docs-from OUT/performance.md` copies into
# docs/performance.md here.
#
# The GPU machine is expected to have a CUDA build of torch, transformers (within pyproject's
# bounds) and the common scientific stack (numpy, pandas, pyarrow, pytest...), but not
# transformer_lens or datasets, and no network. Bring those as wheels in .whl/ at the repo root;
# the script installs whatever is there with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl
# and puts /tmp/site, then this repo (crane_lens itself, not installed), on PYTHONPATH.
#
# Preparing .whl/ (here, in the repo root, once). The project's runtime dependencies beyond
# torch are what `.venv/bin/pip freeze` shares with requirements/lock.txt; of those the GPU image
# lacks these (take the versions from the lock):
#   echo /.whl/ >> .git/info/exclude        # never committed
#   grep -E '^(transformer-lens|datasets|dill|multiprocess|langcodes|language-data|marisa-trie|jaxtyping|wadler-lindig|einops|fancy-einsum|beartype|typeguard)==' \
#     requirements/lock.txt > /tmp/gpu-wheels.txt
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl -r /tmp/gpu-wheels.txt
# (Not plotly: with it the carried tree passed the device's 64 MiB limit; the image has none, and
# the GPU tier needs none.) Pure-Python wheels (py3-none-any) work for any platform. If env.txt stops at a
# ModuleNotFoundError, add that package's NAME==VERSION from the lock the same way (its
# dependencies are not fetched: --no-deps). Add transformers only to test the locked version
# instead of the machine's: it checks the versions of its own dependencies when imported.
# --python-version must match the machine's python3 (env.txt prints it).
#
# Time: every step has its own limit in seconds (TESTS_S=180, BENCH_1B_S=150, BENCH_8B_S=200),
# so the whole stays under 10 minutes; summary.txt says how long each took and whether it ran out.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/crane-lens-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "installing .whl/ failed" | tee "$OUT/summary.txt"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

: >"$OUT/summary.txt"
failed=0
step() {  # step NAME SECONDS LOG COMMAND...: run with a time limit, tee the log, record the status
  local name=$1 seconds=$2 log=$3
  shift 3
  local start=$SECONDS
  timeout "$seconds" "$@" 2>&1 | tee "$OUT/$log"
  local rc=$?
  echo "$name: exit $rc$([ $rc -eq 124 ] && echo " (time limit ${seconds}s)") after $((SECONDS - start))s" \
    | tee -a "$OUT/summary.txt"
  return $rc
}

step environment 60 env.txt python3 - <<'EOF' || exit 1
import platform, torch, transformers, transformer_lens, crane_lens
print("python", platform.python_version(), "| torch", torch.__version__, "| transformers",
      transformers.__version__, "| crane_lens from", crane_lens.__file__)
print("CUDA:", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
assert torch.cuda.is_available(), "no CUDA: nothing to check here"
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/env.txt" 2>&1

# -o addopts=: the project's addopts name plugins (nbval) the GPU machine may lack.
step "pytest -m gpu" "${TESTS_S:-180}" pytest.txt python3 -m pytest -o addopts= -p no:cacheprovider \
  -ra --strict-markers --durations=5 -m gpu tests/gpu || failed=1
step "bench llama-1b" "${BENCH_1B_S:-150}" bench-llama-1b.txt python3 benchmarks/bench_stats.py \
  --device cuda --shape llama-1b --dtype bfloat16 --repeats 5 --write-docs || failed=1
step "bench llama-8b" "${BENCH_8B_S:-200}" bench-llama-8b.txt python3 benchmarks/bench_stats.py \
  --device cuda --shape llama-8b --dtype bfloat16 --repeats 3 --write-docs || failed=1
cp docs/performance.md "$OUT/performance.md"
exit $failed
