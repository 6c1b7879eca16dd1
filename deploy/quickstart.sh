#!/usr/bin/env bash
# Tollgate quickstart: a throwaway PostgreSQL, Tollgate in front of it, and psql going through
# Tollgate with an identity token instead of a database password.
#
#   deploy/quickstart.sh          build, start everything, run the demos, print how to connect
#   deploy/quickstart.sh stop     stop what a previous run started
#   deploy/quickstart.sh status   show what is running and how to connect
#
# State (keys, secrets, config, logs, pid files) lives in $TOLLGATE_HOME, by default
# .tollgate/quickstart in the repository. Running it again stops the previous run first and
# starts from a fresh database (the issuer keys are kept, so earlier tokens stay valid).
# As root, PostgreSQL runs as the `postgres` user (it refuses to run as root).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

STATE=${TOLLGATE_HOME:-$ROOT/.tollgate/quickstart}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
DEMO_SUB=alice@example.com
DEMO_GROUPS=eng
TOKEN_TTL=8h

# --- small helpers -------------------------------------------------------------------------------

# Runs a PostgreSQL server command (initdb, pg_ctl) as the server's user.
as_pg_user() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

toml_str() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}

# `pid_alive FILE NAME`: the pid in FILE runs a process called NAME (not a reused pid).
pid_alive() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(<"$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}

pg_dir() { cat "$STATE/postgres.dir" 2>/dev/null || echo "$STATE/postgres"; }

gateway_conninfo() { echo "host=127.0.0.1 port=$PORT dbname=orders user=$DEMO_SUB sslmode=disable"; }

# `psql_through VAR psql-args...`: psql through Tollgate with the token in variable VAR as the
# password, shown the way a user would type it (the variable, not the long token).
psql_through() {
    local var=$1
    shift
    printf '%s$ PGPASSWORD=$%s psql %s%s\n' "$_BOLD" "$var" "$(quote_args "$(gateway_conninfo)" "$@")" "$_RESET"
    PGPASSWORD=${!var} psql -X -w "$(gateway_conninfo)" "$@"
}

# --- stop ----------------------------------------------------------------------------------------

stop_all() {
    local pid i
    if pid_alive "$STATE/tollgate.pid" tollgate; then
        pid=$(<"$STATE/tollgate.pid")
        info "stopping tollgate (pid $pid)"
        kill -TERM "$pid"
        # The quickstart config drains for 5 s; allow some more before SIGKILL.
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "tollgate did not exit after SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$STATE/tollgate.pid"
    local data
    data="$(pg_dir)/data"
    if [[ -f $data/postmaster.pid ]]; then
        info "stopping PostgreSQL ($data)"
        as_pg_user "$(pg_bindir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null ||
            warn "pg_ctl stop failed; see $(pg_dir)/postgres.log"
    fi
}

# --- status --------------------------------------------------------------------------------------

print_connect_help() {
    local token_cmd
    token_cmd="$BIN/tollctl token issue --sub $DEMO_SUB --groups $DEMO_GROUPS --key-dir $STATE/keys"
    section "connect yourself"
    cat <<EOF
Tollgate listens on 127.0.0.1:$PORT and forwards connection "orders" to PostgreSQL on
127.0.0.1:$PG_PORT as role orders_app, whose password only Tollgate's config holds:
  $STATE/secrets/orders_app.pw
You log in as yourself, with a token as the password:

  export TOKEN=\$(cat $STATE/token)      # $DEMO_SUB, groups $DEMO_GROUPS, valid $TOKEN_TTL
  PGPASSWORD=\$TOKEN psql "$(gateway_conninfo)"

Mint another token (the user name you connect with must equal --sub):

  export TOKEN=\$($token_cmd | tail -n1)

Config:        $STATE/tollgate.toml   (every field: deploy/examples/tollgate.toml)
Tollgate log:  $STATE/tollgate.log
Postgres log:  $(pg_dir)/postgres.log
Stop all:      deploy/quickstart.sh stop
EOF
}

load_ports() {
    # shellcheck source=/dev/null
    [[ -f $STATE/ports ]] && source "$STATE/ports"
    PORT=${PORT:-?} PG_PORT=${PG_PORT:-?}
}

status() {
    load_ports
    if pid_alive "$STATE/tollgate.pid" tollgate; then
        ok "tollgate running (pid $(<"$STATE/tollgate.pid")) on 127.0.0.1:$PORT"
    else
        info "tollgate not running"
    fi
    if [[ -f "$(pg_dir)/data/postmaster.pid" ]]; then
        ok "PostgreSQL running on 127.0.0.1:$PG_PORT"
    else
        info "PostgreSQL not running"
    fi
    pid_alive "$STATE/tollgate.pid" tollgate && print_connect_help
    return 0
}

# --- start: one function per step ------------------------------------------------------------------

prerequisites() {
    section "1. prerequisites"
    need pg-server postgresql postgresql-contrib
    need psql postgresql-client
    need cc gcc libc6-dev
    is_root && need runuser util-linux
    install_needed
    ensure_postgres_user
    ensure_cargo
    PG_BIN=$(pg_bindir) || die "PostgreSQL server binaries not found after install"
    note "PostgreSQL: $("$PG_BIN/postgres" --version) in $PG_BIN"
}

stop_previous() {
    section "2. stopping a previous quickstart (if any)"
    mkdir -p "$STATE"
    stop_all
    note "state dir: $STATE"
}

build() {
    section "3. building release binaries (the first build takes several minutes)"
    show_and_run cargo build --release -p tollgate -p tollctl || die "the build failed (see above)"
    [[ -x $BIN/tollgate && -x $BIN/tollctl ]] || die "no tollgate/tollctl in $BIN after the build"
}

start_postgres() {
    section "4. starting a throwaway PostgreSQL"
    local dir=$STATE/postgres
    mkdir -p "$dir" "$STATE/secrets"
    chmod 700 "$STATE/secrets"
    if is_root; then
        chown postgres: "$dir"
        chmod 700 "$dir"
        # The server user must reach the data directory; under /root, say, it cannot.
        if ! runuser -u postgres -- test -w "$dir"; then
            rm -rf "$dir"
            dir=/tmp/tollgate-quickstart-$(printf %s "$STATE" | md5sum | cut -c1-12)
            mkdir -p "$dir"
            chown postgres: "$dir"
            chmod 700 "$dir"
            note "the postgres user cannot reach $STATE; PostgreSQL lives in $dir"
        fi
    fi
    echo "$dir" >"$STATE/postgres.dir"
    rm -rf "$dir/data" "$dir/postgres.log"

    # Two secrets, both random and kept in 0600 files: the superuser's, used only by this
    # script for setup, and orders_app's, which only Tollgate's config refers to.
    local secret
    for secret in postgres orders_app; do
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE/secrets/$secret.pw")
    done
    (umask 077 && cp "$STATE/secrets/postgres.pw" "$dir/superuser.pw")
    is_root && chown postgres: "$dir/superuser.pw"

    PG_PORT=$(free_port_from "${TOLLGATE_PG_PORT:-25432}")
    note "initdb $dir/data"
    as_pg_user "$PG_BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/superuser.pw" \
        --auth=scram-sha-256 -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
        die "initdb failed: $(cat "$dir/initdb.log")"
    rm -f "$dir/superuser.pw"
    cat >>"$dir/data/postgresql.conf" <<EOF

# deploy/quickstart.sh: a throwaway demo server on loopback only, TCP only
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
fsync = off
max_connections = 100
EOF
    as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
        die "PostgreSQL did not start: $(tail -n 20 "$dir/postgres.log")"
    ok "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

    note "creating role orders_app, database orders and the demo schema"
    PGPASSWORD=$(<"$STATE/secrets/postgres.pw") psql -X -q -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres sslmode=disable" \
        -v pw="$(<"$STATE/secrets/orders_app.pw")" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE orders_app LOGIN PASSWORD :'pw';
CREATE DATABASE orders OWNER orders_app;
\connect orders
SET ROLE orders_app;
CREATE TABLE customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  card_number text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id serial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers,
  amount numeric(10,2) NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Card numbers are the card networks' public test numbers (Luhn-valid, never real).
INSERT INTO customers (name, email, card_number) VALUES
  ('Alice Anderson',  'alice.anderson@example.com',  '4111111111111111'),
  ('Bob Okafor',      'bob.okafor@example.org',      '5555555555554444'),
  ('Carmen Nguyen',   'carmen.nguyen@example.net',   '378282246310005'),
  ('Dmitri O''Brien', 'dmitri.obrien@example.com',   '6011111111111117'),
  ('Emma Schmidt',    'emma.schmidt@example.org',    '4012888888881881'),
  ('Farid Haddad',    'farid.haddad@example.net',    '5105105105105100'),
  ('Grace Tanaka',    'grace.tanaka@example.com',    '4242424242424242'),
  ('Hiroshi Patel',   'hiroshi.patel@example.org',   '371449635398431'),
  ('Isabel Moreau',   'isabel.moreau@example.net',   '6011000990139424'),
  ('Jamal Kowalski',  'jamal.kowalski@example.com',  '4000056655665556'),
  ('Keiko Fernandes', 'keiko.fernandes@example.org', '2223003122003222'),
  ('Liam Johansson',  'liam.johansson@example.net',  '5200828282828210');
INSERT INTO orders (customer_id, amount, status, created_at)
SELECT 1 + (g * 5) % 12,
       round((9.5 + (g * 37) % 490 + (g % 100) / 100.0)::numeric, 2),
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'refunded'])[1 + g % 5],
       now() - g * interval '9 hours'
FROM generate_series(1, 60) AS g;
SQL
    ok "database orders: 12 customers (names, emails, card numbers), 60 orders"
}

mint_token() {
    section "5. minting a token for $DEMO_SUB (groups: $DEMO_GROUPS)"
    show_cmd "$BIN/tollctl" token issue --sub "$DEMO_SUB" --groups "$DEMO_GROUPS" --ttl "$TOKEN_TTL" \
        --key-dir "$STATE/keys"
    local out
    out=$("$BIN/tollctl" token issue --sub "$DEMO_SUB" --groups "$DEMO_GROUPS" --ttl "$TOKEN_TTL" \
        --key-dir "$STATE/keys") || die "tollctl token issue failed"
    TOKEN=$(tail -n1 <<<"$out")
    [[ -n $TOKEN ]] || die "tollctl token issue printed no token"
    (umask 077 && printf '%s\n' "$TOKEN" >"$STATE/token")
    note "token: ${TOKEN:0:24}... (saved in $STATE/token)"
    [[ -f $STATE/keys/jwks.json ]] || die "tollctl did not write $STATE/keys/jwks.json"
}

start_tollgate() {
    section "6. starting Tollgate"
    PORT=$(free_port_from "${TOLLGATE_PORT:-15432}")
    cat >"$STATE/tollgate.toml" <<EOF
# Written by deploy/quickstart.sh. Every field is described in deploy/examples/tollgate.toml.
[gateway]
listen = "127.0.0.1:$PORT"
shards = 2
# The demo's psql talks plaintext on loopback; anywhere else tokens travel only over TLS.
allow_plaintext_secrets_on_loopback = true
drain_timeout_s = 5

[identity]
# The local issuer whose key tollctl created in $STATE/keys.
issuer = "tollgate-local"
audience = "tollgate"
jwks_file = $(toml_str "$STATE/keys/jwks.json")

[policy]
# The shipped policy library; edits are picked up while Tollgate runs.
dir = $(toml_str "$ROOT/policies")

[record]
# Every session to zstd Parquet. Files close every 2 s here so the demo can read them at
# once; the default is 300 s.
dir = $(toml_str "$STATE/recordings")
rotate_interval_s = 2

[[connection]]
name = "orders"
protocol = "postgres"
upstream = "127.0.0.1:$PG_PORT"
database = "orders"
user = "orders_app"
password_file = $(toml_str "$STATE/secrets/orders_app.pw")
labels = { env = "demo" }
EOF
    printf 'PORT=%s\nPG_PORT=%s\n' "$PORT" "$PG_PORT" >"$STATE/ports"
    show_and_run "$BIN/tollgate" check-config --config "$STATE/tollgate.toml" ||
        die "the generated config was rejected"
    printf '%s$ %s &%s\n' "$_BOLD" "$(quote_args "$BIN/tollgate" run --config "$STATE/tollgate.toml")" "$_RESET"
    NO_COLOR=1 nohup "$BIN/tollgate" run --config "$STATE/tollgate.toml" \
        >"$STATE/tollgate.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$STATE/tollgate.pid"
    if ! wait_for_port "$PORT" 30 "$pid"; then
        tail -n 30 "$STATE/tollgate.log" >&2 || true
        die "Tollgate did not start listening on 127.0.0.1:$PORT (log above, $STATE/tollgate.log)"
    fi
    ok "Tollgate (pid $pid) listening on 127.0.0.1:$PORT"
}

# --- demos: one function each, run in the order of DEMOS -------------------------------------------

demo_query() {
    section "demo: psql through Tollgate"
    info "You connect as $DEMO_SUB with a token; Tollgate checks it, then logs in to PostgreSQL as"
    info "orders_app with a password you never see. current_user shows the upstream role."
    psql_through TOKEN \
        -c "select current_user as upstream_role, current_database()" \
        -c "select c.name, c.email, count(*) as orders, sum(o.amount) as total from customers c join orders o on o.customer_id = c.id group by c.id order by total desc limit 5"
}

demo_bad_token() {
    section "demo: a bad token is refused"
    local out
    # shellcheck disable=SC2034 # read by psql_through through ${!var}
    FORGED_TOKEN="${TOKEN%.*}.forged-signature"
    info "The same token with its signature replaced:"
    if out=$(psql_through FORGED_TOKEN -c "select 1" 2>&1); then
        printf '%s\n' "$out"
        die "UNEXPECTED: Tollgate accepted a forged token"
    fi
    printf '%s\n' "$out"
    ok "refused, as it should be"
}

demo_blocked_command() {
    section "demo: a command blocked by policy"
    info "Every statement is decided by the Rego policies in policies/ before it reaches the"
    info "database. A DELETE without WHERE is refused (SQLSTATE 42501, with the policy's reason):"
    local out
    if out=$(psql_through TOKEN -c "delete from orders" 2>&1); then
        printf '%s\n' "$out"
        die "UNEXPECTED: the policy let an unqualified DELETE through"
    fi
    printf '%s\n' "$out"
    info "Nothing was deleted:"
    psql_through TOKEN -Atc "select count(*) from orders"
    info "Ask the policy without connecting (here: the same DELETE with a WHERE clause):"
    local explain=("$BIN/tollctl" policy explain --sql "delete from orders where id = 7"
        --sub "$DEMO_SUB" --groups "$DEMO_GROUPS" --connection orders
        --config "$STATE/tollgate.toml" "$ROOT/policies")
    show_cmd "${explain[@]}"
    note "(only the decision's action and reason shown)"
    "${explain[@]}" | grep -E '^  "(action|reason)"'
}

demo_recording() {
    section "demo: every session recorded"
    info "Each session above left its events (connect, statements with their decisions, results"
    info "with the rows as psql received them, disconnect) in zstd Parquet under $STATE/recordings,"
    info "hash-chained per session. Files become readable when closed (every 2 s in this demo)."
    local list=("$BIN/tollctl" sessions list "$STATE/recordings") out="" i
    for i in $(seq 1 50); do
        out=$("${list[@]}" 2>/dev/null) || true
        # The DELETE session is recorded once its file is closed.
        [[ $(awk 'NR > 1 && $NF ~ /^[0-9]+$/ && $NF > 0' <<<"$out") ]] && break
        sleep 0.2
    done
    show_cmd "${list[@]}"
    printf '%s
' "$out"
    local id
    id=$(awk 'NR > 1 && $NF ~ /^[0-9]+$/ && $NF > 0 {id = $1} END {print id}' <<<"$out")
    [[ -n $id ]] || die "UNEXPECTED: no recorded session with a denied statement in $STATE/recordings"
    info "The session with the refused DELETE, as it happened:"
    show_and_run "$BIN/tollctl" replay "$STATE/recordings" "$id" ||
        die "tollctl replay failed"
    info "Nobody has changed the archive (every session's hash chain checks out):"
    show_and_run "$BIN/tollctl" recordings verify "$STATE/recordings" ||
        die "UNEXPECTED: the recording does not verify"
    if python3 -c 'import duckdb' >/dev/null 2>&1; then
        info "The archive is plain Parquet: DuckDB reads it as it is."
        local sql="SELECT principal, statement, action, rules FROM read_parquet('$STATE/recordings/**/*.parquet', hive_partitioning = true) WHERE kind = 'statement' AND action = 'deny'"
        show_cmd python3 -c "import duckdb; duckdb.sql(\"$sql\").show()"
        python3 -c "import duckdb, sys; duckdb.sql(sys.argv[1]).show()" "$sql" ||
            warn "the DuckDB query failed"
    else
        note "(with DuckDB's Python package, pip install duckdb, the README's queries run on it as it is)"
    fi
}

# Coming, one function each, added to DEMOS when the feature lands:
#   demo_masked_column     card_number and email masked on the way out
DEMOS=(demo_query demo_bad_token demo_blocked_command demo_recording)

# --- main ----------------------------------------------------------------------------------------

case ${1:-start} in
start)
    prerequisites
    stop_previous
    build
    start_postgres
    mint_token
    start_tollgate
    section "7. demos"
    for demo in "${DEMOS[@]}"; do
        "$demo"
    done
    print_connect_help
    ;;
stop)
    mkdir -p "$STATE"
    stop_all
    ok "stopped"
    ;;
status) status ;;
-h | --help | help) sed -n '2,13s/^# \{0,1\}//p' "$0" ;;
*) die "unknown command ${1}: use start, stop or status" ;;
esac
