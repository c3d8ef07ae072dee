#!/usr/bin/env bash
# Start (or stop) a real PostgreSQL and an `mlflow server` on loopback for the scale-out tests.
#   source .ci/servers.sh start   -> exports GAN_SWEEP_TEST_PG and GAN_SWEEP_TEST_MLFLOW
#   source .ci/servers.sh stop
# PostgreSQL comes from Debian's package and runs as a non-root user; both servers keep their
# data in a temporary folder and listen on 127.0.0.1 only.
set -u
PG_PORT=${PG_PORT:-55432}
MLFLOW_PORT=${MLFLOW_PORT:-55500}
SERVERS_DIR=${SERVERS_DIR:-/tmp/gan-sweep-servers}

_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

_as_pg_user() {
    # initdb refuses to run as root: use the `postgres` account when we are root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

servers_start() {
    if [ -z "$(_pg_bin)" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null || true
        fi
    fi
    local bin; bin=$(_pg_bin)
    mkdir -p "$SERVERS_DIR"
    if [ -n "$bin" ]; then
        local data="$SERVERS_DIR/pg"
        # A throwaway server: no commit waits for the disk (what is tested is gan-sweep's side of a
        # server; the test that stops PostgreSQL mid-trial runs its own).
        local PG_THROWAWAY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        rm -rf "$data"; mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres "$data" "$SERVERS_DIR"
        _as_pg_user "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
        _as_pg_user "$bin/pg_ctl" -D "$data" -l "$data/log" -w -o "-p $PG_PORT -k $data -c listen_addresses=127.0.0.1 -c max_connections=200 $PG_THROWAWAY" start >/dev/null
        export GAN_SWEEP_TEST_PG="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
        echo "PostgreSQL on 127.0.0.1:$PG_PORT"
    else
        echo "PostgreSQL not available: the scale-out tests that need it will be skipped"
    fi
    if command -v mlflow >/dev/null; then
        rm -rf "$SERVERS_DIR/mlflow"; mkdir -p "$SERVERS_DIR/mlflow"
        # Without MLflow's job execution (GenAI evaluation jobs gan-sweep never submits): by default the
        # server also starts a job runner and seven huey consumers, each importing MLflow: 54 s of CPU in
        # its first 80 s here against 11 s without them, taken from the tests' first minute.
        (cd "$SERVERS_DIR/mlflow" && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false nohup mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" \
            --backend-store-uri "sqlite:///$SERVERS_DIR/mlflow/mlflow.db" \
            --artifacts-destination "$SERVERS_DIR/mlflow/artifacts" --workers 1 >"$SERVERS_DIR/mlflow/log" 2>&1 &
         echo $! >"$SERVERS_DIR/mlflow/pid")
        for _ in $(seq 1 60); do
            if python3 - "$MLFLOW_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
PY
            then
                export GAN_SWEEP_TEST_MLFLOW="http://127.0.0.1:$MLFLOW_PORT"
                echo "mlflow server on 127.0.0.1:$MLFLOW_PORT"
                return 0
            fi
            sleep 1
        done
        echo "mlflow server did not come up (see $SERVERS_DIR/mlflow/log)"
    fi
}

servers_stop() {
    local bin; bin=$(_pg_bin)
    if [ -n "$bin" ] && [ -d "$SERVERS_DIR/pg" ]; then
        _as_pg_user "$bin/pg_ctl" -D "$SERVERS_DIR/pg" -m fast stop >/dev/null 2>&1 || true
    fi
    if [ -f "$SERVERS_DIR/mlflow/pid" ]; then
        pkill -P "$(cat "$SERVERS_DIR/mlflow/pid")" 2>/dev/null || true
        kill "$(cat "$SERVERS_DIR/mlflow/pid")" 2>/dev/null || true
    fi
    pkill -f "mlflow server --host 127.0.0.1 --port $MLFLOW_PORT" 2>/dev/null || true
}

case "${1:-}" in
    start) servers_start ;;
    stop) servers_stop ;;
esac
