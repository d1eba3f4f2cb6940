# Sourced by .ci/run after it created a virtual environment with the CUDA compiler wheels:
#
#   python3 -m venv "$REPO/.venv"
#   "$REPO/.venv/bin/pip" install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 \
#       nvidia-cuda-nvcc-cu12
#   . .ci/cuda-env.sh "$REPO/.venv"
#
# Exports what the CUDA tests need without a GPU or a CUDA toolkit:
#   LD_LIBRARY_PATH  gains the directory of libnvrtc.so.12 (cudarc loads it at run time);
#   ASL_PTXAS        the ptxas binary (tests/cuda_ptxas.rs), also put on PATH;
#   ASL_CUDA_INCLUDE the CUDA headers of the runtime wheel (not needed by the kernels, which
#                    include no CUDA header; exported for experiments).
# It does not set ASL_REQUIRE_NVRTC; .ci/run does. Safe to source more than once.

_asl_venv="${1:-${ASL_VENV:-.venv}}"
_asl_nv=""
for _d in "$_asl_venv"/lib/python3*/site-packages/nvidia "$_asl_venv"/Lib/site-packages/nvidia; do
    if [ -d "$_d" ]; then _asl_nv="$_d"; break; fi
done
if [ -z "$_asl_nv" ]; then
    echo "cuda-env.sh: no site-packages/nvidia under $_asl_venv (pip install the wheels first)" >&2
    return 1 2>/dev/null || exit 1
fi
_asl_nv="$(cd "$_asl_nv" && pwd)"

if [ -d "$_asl_nv/cuda_nvrtc/lib" ]; then
    case ":${LD_LIBRARY_PATH:-}:" in
        *":$_asl_nv/cuda_nvrtc/lib:"*) ;;
        *) export LD_LIBRARY_PATH="$_asl_nv/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
else
    echo "cuda-env.sh: nvidia-cuda-nvrtc-cu12 is missing ($_asl_nv/cuda_nvrtc/lib)" >&2
fi
if [ -x "$_asl_nv/cuda_nvcc/bin/ptxas" ]; then
    export ASL_PTXAS="$_asl_nv/cuda_nvcc/bin/ptxas"
    case ":$PATH:" in
        *":$_asl_nv/cuda_nvcc/bin:"*) ;;
        *) export PATH="$_asl_nv/cuda_nvcc/bin:$PATH" ;;
    esac
else
    echo "cuda-env.sh: nvidia-cuda-nvcc-cu12 is missing ($_asl_nv/cuda_nvcc/bin/ptxas)" >&2
fi
if [ -d "$_asl_nv/cuda_runtime/include" ]; then
    export ASL_CUDA_INCLUDE="$_asl_nv/cuda_runtime/include"
fi
unset _asl_venv _asl_nv _d
