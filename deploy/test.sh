#!/usr/bin/env bash
# Tollgate's whole test run: what CI runs (.ci/run) and what to run before pushing.
#
#   deploy/test.sh            install missing system tools (as root), build, test, check format
#
# Integration tests start their own throwaway PostgreSQL clusters on free loopback ports
# (dataplane/tests/support); nothing here needs a running server. Budget: well under 30
# minutes on 2 cores from a clean checkout.
#
# Each step is one `step` line below; add new ones the same way.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}
if [[ ${CI:-} == true ]]; then
    # A clean checkout is built once: incremental artefacts would only cost time and disk.
    export CARGO_INCREMENTAL=0
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# --- step runner ---------------------------------------------------------------------------
# `step NAME [--build | --after-build] [--timeout 20m] CMD...` runs CMD, times it and records
# the result. A failing step does not stop the run: every result is in the summary and the
# exit code is 1 if any step failed. `--after-build` steps are skipped when the `--build` step
# failed (they could only fail the same way).
_STEP_NAMES=() _STEP_RESULTS=() _STEP_SECONDS=()
_FAILED=0 _BUILD_OK=1
step() {
    local name=$1 is_build=0 after_build=0 limit=30m
    shift
    while [[ ${1:-} == --* ]]; do
        case $1 in
        --build) is_build=1 ;;
        --after-build) after_build=1 ;;
        --timeout) limit=$2 && shift ;;
        *) die "step $name: unknown option $1" ;;
        esac
        shift
    done
    section "$name"
    local result start=$SECONDS
    if ((after_build == 1 && _BUILD_OK == 0)); then
        result=SKIPPED
        note "skipped: the build failed"
    else
        note "\$ $*"
        # `timeout` keeps a hung test from eating CI's 90 minutes. Without a terminal it kills
        # the whole process group (cargo, test binaries; test servers clean up after
        # themselves); with one it stays in the foreground so Ctrl-C still works.
        local fg=()
        [[ -t 0 ]] && fg=(--foreground)
        local rc=0
        timeout "${fg[@]}" --kill-after=30s "$limit" "$@" || rc=$?
        if ((rc == 0)); then
            result=ok
        else
            result="FAILED (exit $rc)"
            ((rc == 124)) && result="FAILED (timed out after $limit)"
            _FAILED=1
            ((is_build)) && _BUILD_OK=0
        fi
    fi
    _STEP_NAMES+=("$name") _STEP_RESULTS+=("$result") _STEP_SECONDS+=($((SECONDS - start)))
}

summary() {
    section "summary"
    local i
    for i in "${!_STEP_NAMES[@]}"; do
        local r=${_STEP_RESULTS[$i]} colour=$_GREEN
        [[ $r == ok ]] || colour=$_RED
        [[ $r == SKIPPED ]] && colour=$_YELLOW
        printf '  %-28s %s%-32s%s %5ss\n' "${_STEP_NAMES[$i]}" "$colour" "$r" "$_RESET" "${_STEP_SECONDS[$i]}"
    done
    printf '  %-28s %-32s %5ss\n' "total" "" "$SECONDS"
    if ((_FAILED)); then
        printf '%sdeploy/test.sh: FAILED%s\n' "$_RED" "$_RESET"
    else
        printf '%sdeploy/test.sh: all steps ok%s\n' "$_GREEN" "$_RESET"
    fi
}

# --- prerequisites -----------------------------------------------------------------------------
section "prerequisites"
need pg-server postgresql postgresql-contrib
need psql postgresql-client
need pgbench postgresql-contrib
need openssl openssl
need cc gcc libc6-dev
need runuser util-linux
need python3 python3 python3-pip
install_needed
ensure_postgres_user
ensure_duckdb
ensure_cargo
if bindir=$(pg_bindir); then note "PostgreSQL: $("$bindir/postgres" --version) in $bindir"; fi
note "target dir: $TARGET_DIR"
# A clean debug build and test run take about 2.5 GB (measured: 2.0 GB in target/).
check_free_space "$TARGET_DIR" 3072

# --- steps (one line each) -----------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
    TESTS=(cargo nextest run --workspace --no-fail-fast)
else
    note "cargo-nextest not installed: tests run with cargo test"
    TESTS=(cargo test --workspace --no-fail-fast)
fi
if cargo fmt --version >/dev/null 2>&1; then
    step "format" cargo fmt --all -- --check --color "$([[ -t 1 ]] && echo auto || echo never)"
else
    warn "rustfmt is not installed (rustup component add rustfmt): format not checked"
fi
step "build" --build cargo build --workspace --all-targets
if cargo clippy --version >/dev/null 2>&1; then
    step "lints" --after-build cargo clippy --workspace --all-targets -- -D warnings
else
    warn "clippy is not installed (rustup component add clippy): lints not checked"
fi
step "doc tests" --after-build cargo test --workspace --doc
step "policy tests" --after-build "$TARGET_DIR/debug/tollctl" policy test policies/
# Keep the main test run the last step that runs a test runner: CI reads the closing line of
# the last one, and the doc tests' is usually "0 passed". (The load test prints no such line.)
step "tests" --after-build --timeout 25m "${TESTS[@]}"
# Quick mode checks that every run completes without failures, never speed: the debug build
# the tests used is enough, and saves CI a release build.
step "load test (quick)" --after-build --timeout 15m "$TARGET_DIR/debug/tollgate-loadtest" run --hermetic --quick --tollgate-bin "$TARGET_DIR/debug/tollgate"

summary
exit "$_FAILED"
