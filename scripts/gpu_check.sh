#!/usr/bin/env bash
# gpu_check.sh: checks the CUDA backend on a machine with an NVIDIA GPU and no Rust toolchain.
#
# 1. Build a bundle where Rust is (any Linux x86_64 machine; no GPU or CUDA needed):
#
#        scripts/gpu_check.sh --bundle DIR
#
#    It runs `cargo test --release --no-default-features --features cuda --no-run --test
#    cuda_gpu` and `cargo bench --no-run --no-default-features --features cuda --bench cuda`,
#    then copies into DIR:
#        DIR/gpu_check.sh                 this script
#        DIR/torch_asl_baseline.py        timm in PyTorch eager / torch.compile (optional part)
#        DIR/bin/cuda_gpu                 the GPU test binary (tests/cuda_gpu.rs)
#        DIR/bin/cuda_bench               the bench binary (benches/cuda.rs, run with --table)
#        DIR/golden/timm_asl_cases.json   timm's golden cases (read through ASL_GOLDEN)
#    (Binaries built by hand go to the same places under the same names.)
#
# 2. Copy DIR to the GPU machine and run it there:
#
#        DIR/gpu_check.sh [--big] [--no-torch]
#
#    It needs the NVIDIA driver (libcuda) and NVRTC (libnvrtc.so.12: a CUDA toolkit, or the
#    nvidia-cuda-nvrtc-cu12 wheel that PyTorch installs; found automatically through python3).
#    Steps: the CUDA tests (ASL_REQUIRE_CUDA=1, so a missing GPU fails them; --big adds the
#    > 2^31-element test, about 11 GB of GPU memory), then for 4096x80, 1024x1000, 4096x9605
#    and 64x100000 the fused f32 time, GB/s and percent of a device-to-device copy of both
#    losses, then timm's losses in PyTorch eager and under torch.compile when python3 has
#    torch and timm (--no-torch skips them), and finally a short table.
#    Exit status: 0 when the tests passed, 1 when they failed, 2 when no GPU could be used.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

bundle() {
    local out="$1"
    local repo
    repo="$(cd "$here/.." && pwd)"
    mkdir -p "$out/bin" "$out/golden" || return 1
    local exe
    exe=$(cd "$repo" && cargo test --release --no-default-features --features cuda --no-run \
        --test cuda_gpu --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*cuda_gpu-[^"]*"' | tail -n 1 | cut -d'"' -f4)
    [ -n "$exe" ] || { echo "building tests/cuda_gpu.rs failed" >&2; return 1; }
    cp "$exe" "$out/bin/cuda_gpu"
    exe=$(cd "$repo" && cargo bench --no-run --no-default-features --features cuda \
        --bench cuda --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*/cuda-[^"]*"' | tail -n 1 | cut -d'"' -f4)
    [ -n "$exe" ] || { echo "building benches/cuda.rs failed" >&2; return 1; }
    cp "$exe" "$out/bin/cuda_bench"
    cp "$here/gpu_check.sh" "$here/torch_asl_baseline.py" "$out/"
    cp "$repo/../shared/golden/timm_asl_cases.json" "$out/golden/"
    echo "bundle ready in $out; copy it to the GPU machine and run $out/gpu_check.sh"
}

if [ "${1:-}" = "--bundle" ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 --bundle DIR" >&2; exit 2; }
    bundle "$2"
    exit $?
fi

big=0
torch=1
for a in "$@"; do
    case "$a" in
        --big) big=1 ;;
        --no-torch) torch=0 ;;
        *) echo "usage: $0 [--big] [--no-torch] | --bundle DIR" >&2; exit 2 ;;
    esac
done

# The binaries: next to this script (a bundle), or in a repository's target/ directory.
find_bin() {
    local name="$1" pattern="$2"
    if [ -x "$here/bin/$name" ]; then echo "$here/bin/$name"; return; fi
    ls -t "$here"/../target/release/deps/$pattern 2>/dev/null | grep -v '\.d$' | head -n 1
}
tests_bin="$(find_bin cuda_gpu 'cuda_gpu-*')"
bench_bin="$(find_bin cuda_bench 'cuda-*')"
golden="$here/golden/timm_asl_cases.json"
[ -f "$golden" ] || golden="$here/../../shared/golden/timm_asl_cases.json"
if [ -z "$tests_bin" ] || [ -z "$bench_bin" ]; then
    echo "gpu_check: the test and bench binaries were not found; build a bundle with" >&2
    echo "    scripts/gpu_check.sh --bundle DIR    (on a machine with Rust)" >&2
    exit 2
fi

# The GPU and the libraries cudarc loads at run time.
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
prepend_lib() { export LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so' &&
    [ ! -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ]; then
    echo "gpu_check: no NVIDIA driver here (libcuda.so not found): nothing to check" >&2
    exit 2
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        if [ -e "$d/libnvrtc.so.12" ]; then prepend_lib "$d"; fi
    done
    if command -v python3 >/dev/null 2>&1; then
        nv=$(python3 -c 'import os, nvidia.cuda_nvrtc as m
print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)
        if [ -n "$nv" ] && [ -d "$nv" ]; then prepend_lib "$nv"; fi
    fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== CUDA tests ($tests_bin)"
status=0
ASL_REQUIRE_CUDA=1 ASL_GOLDEN="$golden" ASL_CUDA_BIG="$big" \
    "$tests_bin" --test-threads=1 2>&1 | tee "$work/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if grep -q "CUDA backend is unavailable" "$work/tests.log"; then
    echo "gpu_check: the CUDA backend could not start (see above)" >&2
    exit 2
fi

echo "== asymloss CUDA bench ($bench_bin --table)"
"$bench_bin" --table 2>&1 | tee "$work/ours.log"

if [ "$torch" = 1 ] && command -v python3 >/dev/null 2>&1; then
    echo "== timm in PyTorch (eager, torch.compile)"
    timeout 1800 python3 "$here/torch_asl_baseline.py" 2>&1 | tee "$work/torch.log"
else
    : > "$work/torch.log"
fi

echo "== summary"
if command -v python3 >/dev/null 2>&1; then
    python3 "$here/torch_asl_baseline.py" --report "$work/ours.log" "$work/torch.log"
else
    sed -n '/^$/,$p' "$work/ours.log"
fi
if [ "$status" = 0 ]; then echo "CUDA tests: passed"; else echo "CUDA tests: FAILED"; fi
exit "$status"
