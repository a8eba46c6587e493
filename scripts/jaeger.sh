#!/usr/bin/env bash
# Jaeger for `make traces`: a trace backend on this machine, so a developer
# sees the spans of the local stack (a finalize, say) without an AWS account.
#
#   scripts/jaeger.sh build    build .bin/jaeger once (about 4 minutes on 2 cores, 80 MB)
#   scripts/jaeger.sh traces   build it if missing, start it, then run the
#                              local stack (.bin/moc-local) exporting to it;
#                              Ctrl-C stops both
#
# Only `make traces` runs this: `make local`, `make test` and scripts/deps.sh
# never build Jaeger, and it is not in go.mod nor tools/go.mod.
#
# Why not `go install` or tools/go.mod: Jaeger's go.mod has a replace
# directive, which `go install pkg@version` refuses, and its dependency tree
# (the OpenTelemetry Collector, storage clients) would weigh on tools/go.mod.
# So the module is fetched through the Go module proxy into the module cache
# (`go mod download`), copied out of it (the cache is read-only) and built as
# a main module of its own, which honours its replace directive.
#
# github.com/jaegertracing/jaeger v1.76.0 is the release whose cmd/jaeger is
# Jaeger v2 (v2.13.0, "Jaeger backend v2"): an OpenTelemetry Collector
# distribution with Jaeger's storage and query extensions. It is run here
# with a configuration of its own (below; without --config it would use its
# built-in all-in-one configuration, which also opens the Jaeger, Zipkin,
# sampling, health, expvar, zpages and metrics ports): OTLP in, traces kept
# in memory (lost when it stops), the query API out.
#
# Environment (all optional):
#   JAEGER                  an already built jaeger binary to use instead of .bin/jaeger
#   JAEGER_OTLP_HTTP_ADDR   OTLP/HTTP receiver             (127.0.0.1:4318)
#   JAEGER_OTLP_GRPC_ADDR   OTLP/gRPC receiver             (127.0.0.1:4317)
#   JAEGER_QUERY_ADDR       query API (and UI) over HTTP   (127.0.0.1:16686)
#   JAEGER_QUERY_GRPC_ADDR  query API over gRPC            (127.0.0.1:16685)
#   JAEGER_UI_ASSETS        a built jaeger-ui (its index.html's folder) to
#                           serve on JAEGER_QUERY_ADDR: a Jaeger built from
#                           the module has no UI assets, only the HTTP API
#   OTEL_SERVICE_NAME       the stack's service name in Jaeger (moc-upload)
#   OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG: passed through to the stack
# and every variable `make local` reads (LOCAL_HTTP_ADDR, LOCAL_DATA_DIR, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"

JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_VERSION=v1.76.0
# The Jaeger v2 release of that module version (its CHANGELOG: "v1.76.0 /
# v2.13.0"), which cmd/jaeger reports, as upstream's builds do.
JAEGER_V2_VERSION=v2.13.0
BIN=.bin/jaeger

say() { printf 'jaeger: %s\n' "$*"; }
die() { printf 'jaeger: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- build ---
# built: true when .bin/jaeger is there and is the pinned version (it says
# so in `jaeger version`, from the -X flags below).
built() {
  local v
  [ -x "$BIN" ] && v=$("$BIN" version 2>/dev/null) && [[ $v == *"\"gitVersion\":\"$JAEGER_V2_VERSION\""* ]]
}

# build: makes .bin/jaeger unless it is there (or $JAEGER is given).
# Idempotent; a lock keeps two runs from building it twice at once.
build() {
  if [ -n "${JAEGER:-}" ]; then
    [ -x "$JAEGER" ] || die "JAEGER=$JAEGER is not an executable: fix or unset it"
    say "using JAEGER=$JAEGER"
    return
  fi
  if built; then
    say "$BIN is built ($JAEGER_V2_VERSION)"
    return
  fi
  if [ -e "$BIN" ]; then
    say "$BIN is not Jaeger $JAEGER_V2_VERSION ($("$BIN" version 2>/dev/null | tail -n 1 || true)); building it again"
  fi
  command -v go >/dev/null \
    || die "Go is missing (looked on PATH and in /usr/local/go/bin): install Go 1.26 into /usr/local/go"
  mkdir -p .bin
  exec 8>.bin/.jaeger.lock
  if command -v flock >/dev/null; then flock 8; fi
  if built; then
    say "$BIN was built meanwhile"
    exec 8>&-
    return
  fi

  local tmp json dir start
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/moc-jaeger-build.XXXXXX")
  # The copy goes when this ends, built or not; the Go build cache keeps
  # what was compiled, so a failed build is quicker to retry.
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)

  say "downloading $JAEGER_MODULE@$JAEGER_VERSION through the Go module proxy ($(go env GOPROXY))"
  # Run outside this repository so that neither go.mod is read or touched.
  json=$(cd "$tmp" && go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" 2>&1) || json+=$'\n(failed)'
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [ -z "$dir" ] || [ ! -f "$dir/go.mod" ]; then
    printf '%s\n' "$json" >&2
    die "go mod download $JAEGER_MODULE@$JAEGER_VERSION failed (above): is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
  fi

  say "copying it out of the module cache ($dir) to $tmp/src"
  cp -R "$dir" "$tmp/src" || die "copying $dir to $tmp/src failed"
  chmod -R u+w "$tmp/src"

  say "building $BIN from it (about 4 minutes on 2 cores, more while its dependencies download from the module proxy; once)"
  # The version shows in `jaeger version` and in the collector's build info.
  local vpkg=$JAEGER_MODULE/internal/version
  (cd "$tmp/src" && GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X $vpkg.latestVersion=$JAEGER_V2_VERSION -X $vpkg.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      -o "$tmp/jaeger" ./cmd/jaeger) \
    || die "building $JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION failed (see above): is the Go module proxy reachable, and is there disk space (about 2 GB for the module cache and build cache)?"
  # Into .bin/ first, then renamed: .bin/jaeger is never half written.
  mv -f "$tmp/jaeger" "$BIN.tmp" && mv -f "$BIN.tmp" "$BIN"
  rm -rf "$tmp"
  trap - EXIT
  say "built $BIN ($(du -h "$BIN" | cut -f1), $(( $(date +%s) - start )) s)"
  exec 8>&-
}

# --------------------------------------------------------------- traces ---
# The configuration: one pipeline, OTLP (HTTP and gRPC) → memory, read by
# jaeger_query, and nothing else listening (no Jaeger or Zipkin receivers,
# sampling, health, expvar, zpages or metrics ports, which the built-in
# all-in-one configuration opens). The collector expands ${env:...} itself.
config() {
  cat <<'YAML'
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    # The collector's own metrics would open a Prometheus port (8888).
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    # Jaeger v2 traces its own query API by default, over OTLP/gRPC to
    # localhost:4317 (or to OTEL_EXPORTER_OTLP_ENDPOINT of its environment):
    # a "jaeger" service among the stack's, and a shutdown that hangs
    # retrying once the receiver is closed.
    enable_tracing: false
    http:
      endpoint: ${env:JAEGER_QUERY_ADDR}
    grpc:
      endpoint: ${env:JAEGER_QUERY_GRPC_ADDR}
    ui:
      assets_path: ${env:JAEGER_UI_ASSETS}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:JAEGER_OTLP_HTTP_ADDR}
      grpc:
        endpoint: ${env:JAEGER_OTLP_GRPC_ADDR}
processors:
  batch:
    # Show spans within a second rather than after the default 200 ms batches
    # fill up; a developer is waiting for them.
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
}

# port_free ADDR: true when nothing listens on host:port ADDR.
port_free() {
  ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

traces() {
  build
  local jaeger=${JAEGER:-$BIN} moc_local=.bin/moc-local
  [ -x "$moc_local" ] || die "$moc_local is missing: run it through make traces (it builds it)"

  export JAEGER_OTLP_HTTP_ADDR=${JAEGER_OTLP_HTTP_ADDR:-127.0.0.1:4318}
  export JAEGER_OTLP_GRPC_ADDR=${JAEGER_OTLP_GRPC_ADDR:-127.0.0.1:4317}
  export JAEGER_QUERY_ADDR=${JAEGER_QUERY_ADDR:-127.0.0.1:16686}
  export JAEGER_QUERY_GRPC_ADDR=${JAEGER_QUERY_GRPC_ADDR:-127.0.0.1:16685}
  export JAEGER_UI_ASSETS=${JAEGER_UI_ASSETS:-}
  if [ -n "$JAEGER_UI_ASSETS" ] && [ ! -f "$JAEGER_UI_ASSETS/index.html" ]; then
    die "JAEGER_UI_ASSETS=$JAEGER_UI_ASSETS has no index.html: point it at a built jaeger-ui or unset it"
  fi
  local var addr
  for var in JAEGER_OTLP_HTTP_ADDR JAEGER_OTLP_GRPC_ADDR JAEGER_QUERY_ADDR JAEGER_QUERY_GRPC_ADDR; do
    addr=${!var}
    [[ $addr == *:* ]] || die "$var=$addr: want host:port"
    port_free "$addr" || die "$addr is in use (is another Jaeger or collector running?): stop it or set $var"
  done

  # Globals, not locals: stop() runs from the traps, also on exit.
  local dir logf
  dir=${LOCAL_DATA_DIR:-.local}
  mkdir -p "$dir"
  logf=$dir/jaeger.log

  jaeger_pid= stack_pid= cfg=
  stop() {
    trap - INT TERM EXIT
    if [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; then
      kill -INT "$stack_pid" 2>/dev/null || true
      wait "$stack_pid" 2>/dev/null || true
    fi
    if [ -n "$jaeger_pid" ]; then
      # Ctrl-C reached it too (same process group); otherwise ask it, and
      # after 5 s insist.
      kill -TERM "$jaeger_pid" 2>/dev/null || true
      local i
      for i in $(seq 50); do kill -0 "$jaeger_pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$jaeger_pid" 2>/dev/null || true
      wait "$jaeger_pid" 2>/dev/null || true
      say "Jaeger stopped; the traces it held (in memory) are gone"
    fi
    if [ -n "$cfg" ]; then rm -f "$cfg"; fi
  }
  trap 'stop; exit 130' INT
  trap 'stop; exit 143' TERM
  trap stop EXIT
  cfg=$(mktemp "${TMPDIR:-/tmp}/moc-jaeger-config.XXXXXX")
  config >"$cfg"

  say "starting $jaeger (in-memory storage; log: $logf)"
  "$jaeger" --config "$cfg" >"$logf" 2>&1 &
  jaeger_pid=$!

  local query=http://$JAEGER_QUERY_ADDR i
  for i in $(seq 300); do
    if curl -fsS -o /dev/null "$query/api/services" 2>/dev/null; then break; fi
    if ! kill -0 "$jaeger_pid" 2>/dev/null; then
      jaeger_pid=
      tail -n 20 "$logf" >&2
      die "Jaeger exited at start (above: the end of $logf)"
    fi
    sleep 0.1
  done
  curl -fsS -o /dev/null "$query/api/services" \
    || { tail -n 20 "$logf" >&2; die "Jaeger's query API ($query) did not answer within 30 s (above: the end of $logf)"; }

  export OTEL_EXPORTER_OTLP_ENDPOINT=http://$JAEGER_OTLP_HTTP_ADDR
  export OTEL_SERVICE_NAME=${OTEL_SERVICE_NAME:-moc-upload}
  # OTLP/HTTP, whatever the caller's shell had.
  export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
  local ui="(no UI: this Jaeger has no UI assets; set JAEGER_UI_ASSETS to a built jaeger-ui)"
  if [ -n "$JAEGER_UI_ASSETS" ]; then ui="UI: $query/search?service=$OTEL_SERVICE_NAME"; fi
  cat <<EOF
jaeger: ready (pid $jaeger_pid), receiving OTLP/HTTP on $OTEL_EXPORTER_OTLP_ENDPOINT, OTLP/gRPC on $JAEGER_OTLP_GRPC_ADDR
jaeger: the stack's traces: $query/api/traces?service=$OTEL_SERVICE_NAME
jaeger:   e.g. curl -s '$query/api/traces?service=$OTEL_SERVICE_NAME&limit=20' | jq '.data[] | {traceID, spans: [.spans[].operationName]}'
jaeger: $ui
jaeger: starting the local stack with OTEL_EXPORTER_OTLP_ENDPOINT=$OTEL_EXPORTER_OTLP_ENDPOINT OTEL_SERVICE_NAME=$OTEL_SERVICE_NAME; Ctrl-C stops both
EOF

  # In the background so that this shell, which owns Jaeger, sees Ctrl-C
  # and the stack's end alike. The stack gets Ctrl-C from the terminal
  # itself (same process group) and from stop() when only this script is
  # signalled.
  "$moc_local" &
  stack_pid=$!
  local rc=0
  wait "$stack_pid" || rc=$?
  stack_pid=
  exit "$rc"
}

case "${1:-}" in
  build) build ;;
  traces) traces ;;
  *) die "usage: scripts/jaeger.sh build|traces" ;;
esac
