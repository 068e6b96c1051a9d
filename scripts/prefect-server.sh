#!/usr/bin/env bash
# A Prefect server laid out as Prefect recommends for production load, for the master
# benchmark: PostgreSQL for state, Redis for events and concurrency leases, the API in one
# process (--no-services) and the background services (task-run recorder, event persister,
# triggers...) in another, so the drive-tag slot requests of a hand-off do not queue behind
# event processing. A fresh database each start, so runs do not slow down as history grows.
#
#   scripts/prefect-server.sh start   # installs postgresql/redis if missing, prints the API URL
#   scripts/prefect-server.sh url
#   scripts/prefect-server.sh stop
#
# Needs the venv with the `server` extra (scripts/venv.sh test,iscsi,server). Root or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${TAPEFLOW_BENCH_SERVER_DIR:-$PWD/.bench-server}"
port="${TAPEFLOW_BENCH_SERVER_PORT:-4310}"
redis_port="${TAPEFLOW_BENCH_REDIS_PORT:-6391}"
db=tapeflow_bench
pg_port=5432
prefect="${VENV:-$PWD/.venv}/bin/prefect"
url="http://127.0.0.1:$port/api"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

as_postgres() { $sudo su postgres -c "$1"; }

ensure_packages() {
  local missing=()
  for p in postgresql redis-server; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

ensure_postgres() {  # a running cluster with a fresh database owned by a login role
  local version
  version=$(pg_lsclusters -h 2>/dev/null | awk '$2=="main" {print $1}' | sort -n | tail -1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    $sudo pg_createcluster "$version" main >/dev/null
  fi
  pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online \
    || $sudo pg_ctlcluster "$version" main start
  pg_port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
  as_postgres "psql -q -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$db'\"" | grep -q 1 \
    || as_postgres "psql -q -c \"CREATE ROLE $db LOGIN PASSWORD '$db'\""
  as_postgres "dropdb --if-exists $db && createdb -O $db $db"
}

server_env() {
  export PREFECT_HOME="$state/home"
  export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$db:$db@127.0.0.1:$pg_port/$db"
  export PREFECT_API_DATABASE_MIGRATE_ON_START=false
  export PREFECT_MESSAGING_BROKER=prefect_redis.messaging
  export PREFECT_MESSAGING_CACHE=prefect_redis.messaging
  export PREFECT_SERVER_EVENTS_CAUSAL_ORDERING=prefect_redis.ordering
  export PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect_redis.lease_storage
  export PREFECT_REDIS_MESSAGING_HOST=127.0.0.1
  export PREFECT_REDIS_MESSAGING_PORT="$redis_port"
  export PREFECT_REDIS_MESSAGING_DB=0
  export PREFECT_SERVER_DOCKET_URL="redis://127.0.0.1:$redis_port/1"
  export PREFECT_SERVER_ANALYTICS_ENABLED=false
  export PREFECT_UI_ENABLED=false
}

start() {
  stop >/dev/null 2>&1 || true
  ensure_packages
  mkdir -p "$state"
  ensure_postgres
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$state/redis.pid" --logfile "$state/redis.log"
  server_env
  if ! "$prefect" server database upgrade -y >"$state/migrate.log" 2>&1; then
    echo "migrating the Prefect database failed; see $state/migrate.log" >&2
    stop
    return 1
  fi
  setsid "$prefect" server start --host 127.0.0.1 --port "$port" --no-services \
    >"$state/api.log" 2>&1 < /dev/null & echo $! >"$state/api.pid"
  setsid "$prefect" server services start >"$state/services.log" 2>&1 < /dev/null &
  echo $! >"$state/services.pid"
  for _ in $(seq 120); do
    if curl -fsS "$url/health" >/dev/null 2>&1; then
      echo "$url"
      return
    fi
    sleep 0.5
  done
  echo "the Prefect API did not answer at $url; see $state/api.log" >&2
  stop
  return 1
}

stop() {
  for name in api services; do
    if [ -f "$state/$name.pid" ]; then
      kill -- "-$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  if [ -f "$state/redis.pid" ]; then
    kill "$(cat "$state/redis.pid")" 2>/dev/null || true
    rm -f "$state/redis.pid"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$url" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
