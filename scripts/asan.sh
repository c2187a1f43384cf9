#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run: builds fastmlem._core with
# -fsanitize=address,undefined into a venv, then runs the kernel tests, the hardening tests and
# the bad-input sweep (whose subprocesses inherit the sanitizers) with libasan preloaded into Python.
# Any sanitizer report aborts the process that hit it, so it shows as a failed test (crashed case).
#   scripts/asan.sh                # fresh venv in a temporary folder
#   ASAN_VENV=/path/venv scripts/asan.sh [pytest args]   # reuse a venv
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ASAN_VENV:-$(mktemp -d)/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q scikit-build-core pybind11 numpy scipy pandas scikit-learn tqdm pytest hypothesis
fi
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
FASTMLEM_CUDA=OFF "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps \
  -Cbuild-dir=build/asan -Ccmake.build-type=RelWithDebInfo \
  -Ccmake.define.CMAKE_CXX_FLAGS="$flags" -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$flags" .
preload="$(${CXX:-g++} -print-file-name=libasan.so) $(${CXX:-g++} -print-file-name=libubsan.so)"
export LD_PRELOAD="$preload"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$(mktemp -d)"   # the installed (sanitized) package, not the source tree
# Deselected: the two cases that make C++ allocate 2**40-element buffers inside an OpenMP region.
# Natively operator new throws std::bad_alloc (MemoryError in Python); ASan's operator new reports
# allocation-size-too-big and aborts instead (whatever allocator_may_return_null says). Node ids are
# relative to the repository (pytest's rootdir).
"$venv/bin/python" -m pytest "$OLDPWD/tests/test_kernels.py" "$OLDPWD/tests/test_hardening.py" \
  "$OLDPWD/tests/test_sweep.py" -q -p no:cacheprovider \
  --deselect "tests/test_hardening.py::test_oversized_batches_raise_instead_of_aborting[6]" \
  --deselect "tests/test_sweep.py::test_bad_input_sweep[core:core importance B 2**40]" "$@"
