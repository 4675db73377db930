#!/usr/bin/env bash
# Fuzzes every cargo-fuzz (libFuzzer) target of the Pet Store for a bounded time each.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      (default: $FUZZ_SECONDS, else 30)
#
# The toolchain is stable Rust: RUSTC_BOOTSTRAP=1 lets it take the `-Z` flags that
# cargo-fuzz passes (sanitizer, coverage). cargo-fuzz is installed from crates.io when
# missing. Build artefacts go to $FUZZ_TARGET_DIR (default fuzz/target), inputs found
# to fuzz/corpus/<target>, crashing inputs to fuzz/artifacts/<target>/ (all ignored by
# git). Exits non-zero when any target crashes or fails to build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${1:-${FUZZ_SECONDS:-30}}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$here/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd "$here"
cargo fuzz build
failed=()
for target in $(cargo fuzz list); do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target"
    seeds=()
    [[ -d "seeds/$target" ]] && seeds=("seeds/$target")
    if ! cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
        echo "!! $target crashed: the input is in fuzz/artifacts/$target/"
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzzing: every target ran ${seconds}s without a crash"
