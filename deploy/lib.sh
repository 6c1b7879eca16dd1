# shellcheck shell=bash
# Shared by deploy/test.sh and deploy/quickstart.sh: output helpers, finding or installing the
# system tools the project needs, and finding cargo. Source it; it defines functions only.

# --- output --------------------------------------------------------------------------------

if [[ -t 1 ]]; then
    _BOLD=$'\e[1m' _DIM=$'\e[2m' _RED=$'\e[31m' _GREEN=$'\e[32m' _YELLOW=$'\e[33m' _RESET=$'\e[0m'
else
    _BOLD='' _DIM='' _RED='' _GREEN='' _YELLOW='' _RESET=''
fi

section() { printf '\n%s== %s ==%s\n' "$_BOLD" "$*" "$_RESET"; }
info() { printf '%s\n' "$*"; }
note() { printf '%s%s%s\n' "$_DIM" "$*" "$_RESET"; }
warn() { printf '%swarning:%s %s\n' "$_YELLOW" "$_RESET" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$_RED" "$_RESET" "$*" >&2
    exit 1
}
ok() { printf '%s%s%s\n' "$_GREEN" "$*" "$_RESET"; }
# Prints its arguments the way a user would type them: quoted when they need it.
quote_args() {
    local arg sep=""
    for arg in "$@"; do
        if [[ $arg =~ ^[-A-Za-z0-9_.,=/:@+]+$ ]]; then
            printf '%s%s' "$sep" "$arg"
        else
            printf '%s"%s"' "$sep" "${arg//\"/\\\"}"
        fi
        sep=" "
    done
}
# Prints a command as a user would type it.
show_cmd() { printf '%s$ %s%s\n' "$_BOLD" "$(quote_args "$@")" "$_RESET"; }
# Prints a command as a user would type it, then runs it.
show_and_run() {
    show_cmd "$@"
    "$@"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# --- PostgreSQL binaries ---------------------------------------------------------------------

# Directory with initdb, pg_ctl, postgres: `pg_config --bindir`, else the highest
# /usr/lib/postgresql/*/bin (Debian keeps them off PATH), else PATH. Same order as the Rust
# test harness (dataplane/tests/support/mod.rs). Prints nothing and fails when none is found.
pg_bindir() {
    local dir
    if [[ -n ${TOLLGATE_PG_BINDIR:-} && -x ${TOLLGATE_PG_BINDIR}/initdb ]]; then
        echo "$TOLLGATE_PG_BINDIR"
        return 0
    fi
    if dir=$(pg_config --bindir 2>/dev/null) && [[ -x $dir/initdb ]]; then
        echo "$dir"
        return 0
    fi
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -t/ -k5,5n | tail -n1)
    if [[ -n $dir ]]; then
        dirname "$dir"
        return 0
    fi
    if dir=$(command -v initdb 2>/dev/null); then
        dirname "$dir"
        return 0
    fi
    return 1
}

# --- system packages ---------------------------------------------------------------------------

# `need CHECK PACKAGE...`: CHECK is a command name, or `pg-server` for initdb/pg_ctl. Every
# package of a failed check is collected; `install_needed` installs them all at once.
_MISSING_PACKAGES=()
_MISSING_WHAT=()
need() {
    local check=$1
    shift
    local present=0
    case $check in
    pg-server) pg_bindir >/dev/null && present=1 ;;
    *) command -v "$check" >/dev/null 2>&1 && present=1 ;;
    esac
    if ((present == 0)); then
        _MISSING_WHAT+=("$check")
        local p
        for p in "$@"; do
            if [[ " ${_MISSING_PACKAGES[*]} " != *" $p "* ]]; then
                _MISSING_PACKAGES+=("$p")
            fi
        done
    fi
}

# Installs what `need` found missing: as root on Debian with apt-get (one `apt-get update`
# first); otherwise prints the command to run and exits 1.
install_needed() {
    if ((${#_MISSING_PACKAGES[@]} == 0)); then
        note "system tools: all present"
        return 0
    fi
    info "missing: ${_MISSING_WHAT[*]} -> packages: ${_MISSING_PACKAGES[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        die "no apt-get here: install the equivalent of '${_MISSING_PACKAGES[*]}' with your package manager and re-run"
    fi
    if ! is_root; then
        die "run as root, or install them first: sudo apt-get install -y --no-install-recommends ${_MISSING_PACKAGES[*]}"
    fi
    export DEBIAN_FRONTEND=noninteractive
    show_and_run apt-get update -qq
    show_and_run apt-get install -y -qq --no-install-recommends "${_MISSING_PACKAGES[@]}"
    _MISSING_PACKAGES=()
    _MISSING_WHAT=()
}

# When root, PostgreSQL must run as another user: make sure `postgres` exists (the Debian
# package creates it; a bare machine may not have it).
ensure_postgres_user() {
    if is_root && ! id postgres >/dev/null 2>&1; then
        show_and_run useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

# --- DuckDB ---------------------------------------------------------------------------------------

# The DuckDB version the recording tests and the README's queries are checked with.
DUCKDB_VERSION=1.1.3

# DuckDB's Python package, which the recording tests use to query the Parquet archive.
ensure_duckdb() {
    if python3 -c 'import duckdb' >/dev/null 2>&1; then
        note "duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')"
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 is needed for the DuckDB tests"
    # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told.
    show_and_run python3 -m pip install --quiet "duckdb==$DUCKDB_VERSION" ||
        show_and_run python3 -m pip install --quiet --break-system-packages "duckdb==$DUCKDB_VERSION" ||
        die "cannot install duckdb==$DUCKDB_VERSION with pip"
}

# --- Rust ----------------------------------------------------------------------------------------

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install a Rust toolchain (https://rustup.rs), rust-version $(rust_version) or newer"
    note "$(cargo --version)"
}

# Free space in MiB on the file system that holds $1 (or its nearest existing parent).
free_mib() {
    local p=$1
    while [[ ! -e $p && $p != / ]]; do p=$(dirname "$p"); done
    df -Pm "$p" | awk 'NR == 2 { print $4 }'
}

# Warns when the file system of $1 has less than $2 MiB free: a build that runs out of disk
# fails deep inside rustc with "No space left on device", far from the cause.
check_free_space() {
    local have
    have=$(free_mib "$1") || return 0
    if ((have < $2)); then
        warn "only ${have} MiB free under $1; a clean build and test run needs about $2 MiB (free some space or set CARGO_TARGET_DIR elsewhere)"
    else
        note "disk: ${have} MiB free under $1"
    fi
}

rust_version() { sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "${ROOT:-.}/Cargo.toml" | head -n1; }

# --- ports ---------------------------------------------------------------------------------------

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# First port from $1 upwards that nothing on 127.0.0.1 listens on.
free_port_from() {
    local p=$1
    while port_in_use "$p"; do
        p=$((p + 1))
    done
    echo "$p"
}

# Waits until 127.0.0.1:$1 accepts TCP; gives up after $2 seconds or when pid $3 (optional) dies.
wait_for_port() {
    local port=$1 timeout=$2 pid=${3:-} i
    for ((i = 0; i < timeout * 10; i++)); do
        port_in_use "$port" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}
