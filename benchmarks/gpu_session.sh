#!/usr/bin/env bash
# One prepared GPU session: the CUDA tests, the throughput benchmark and the real-data benchmark
# at GPU sizes, each step under its own time limit so the whole run is bounded.
#
#   bash benchmarks/gpu_session.sh STEP[,STEP...] [OUTPUT_DIR]
#
# STEPs: env, tests (pytest -m gpu: bf16 + resume on one GPU, DDP and FSDP under torchrun with
# nccl, --parallel dp), bench (benchmarks/bench.py --device cuda on ibd-2538), science (the
# real-data benchmark at the gpu preset, its studies side by side), probe (one fold of the gpu
# preset, to size `science`). SCIENCE_ARGS are added to every science process (e.g.
# "--prepared-root benchmarks/out/science/prepared").
# Missing Python packages (biom-format, scikit-bio and their pure-Python needs) can be given as
# wheels in .whl/ (see benchmarks/README.md); prepared ibd-2538 data is read from
# benchmarks/out/ibd-2538 when it is there; DATA_ROOT names a folder holding sleep-apnea/ and
# ibd-2538/ when ../shared/data is not beside the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
steps=",${1:-env,tests,bench},"
out=${2:-${OUT:-benchmarks/out/gpu}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/aam-site .whl/*.whl || exit 1
    export PYTHONPATH="$PWD:/tmp/aam-site"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
step() { [[ $steps == *",$1,"* ]]; }

if step env; then
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__,
torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
      nproc; } 2>&1 | tee "$out/env.txt"
fi
if step tests; then
    timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 \
        | tee "$out/gpu-tests.txt" | tail -25
fi
if step bench; then
    timeout 180 python3 benchmarks/bench.py --data ibd --device cuda --threads 4 \
        --token-limits 256,512,1024 --batch-sizes 8,32,64 --no-profile \
        --results-dir "$out" 2>&1 | tee "$out/bench.log" | tail -40
fi
if step probe; then
    timeout 90 python3 benchmarks/science.py --preset gpu --studies sleep-apnea-age --seeds 0 \
        --variants aam ${DATA_ROOT:+--data-root $DATA_ROOT} \
        --results-dir "$out" --tag probe 2>&1 | tee "$out/probe.log" | tail -20
fi
if step science; then
    # The studies side by side on the one GPU (ibd-2538, the largest, one process per seed), each
    # process under SCIENCE_LIMIT seconds; each writes science-gpu-<part>.{md,tsv} and its log.
    part() {
        local name=$1; shift
        timeout "${SCIENCE_LIMIT:-420}" python3 benchmarks/science.py --preset gpu --threads 3 \
            "$@" ${SCIENCE_ARGS:-} ${DATA_ROOT:+--data-root $DATA_ROOT} --tag "$name" \
            --work-dir "benchmarks/out/gpu-science/$name" --results-dir "$out" \
            >"$out/science-$name.log" 2>&1
        echo "science part $name: rc $?"
    }
    part age --studies sleep-apnea-age &
    part exposure --studies sleep-apnea-exposure &
    for seed in 0 1 2; do part "ibd-seed$seed" --studies ibd-2538-ibd --seeds "$seed" & done
    wait
    for name in age exposure ibd-seed0 ibd-seed1 ibd-seed2; do
        cp "benchmarks/out/gpu-science/$name/science-gpu.log" "$out/epochs-$name.log" 2>/dev/null
    done
fi
ls -la "$out"
