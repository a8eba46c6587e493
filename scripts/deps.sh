#!/usr/bin/env bash
# Installs what the local stack and the tests need, when it is missing:
# Go modules, PostgreSQL's server binaries (Debian's postgresql package) and
# the versitygw S3 server (built from the Go module proxy into .bin/).
# Idempotent; says what it does; fails with a message saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is not installed (expected in /usr/local/go/bin or on PATH): install Go 1.26 from the Go project's release archive"

have_postgres() {
  [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/postgres" ] && return 0
  command -v initdb >/dev/null && command -v postgres >/dev/null && return 0
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

if [ -n "${DATABASE_URL:-}" ] && [ -n "${TEST_DATABASE_URL:-}" ]; then
  say "DATABASE_URL and TEST_DATABASE_URL are set: not installing PostgreSQL"
elif ! have_postgres; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing PostgreSQL's server from Debian (apt-get install postgresql)…"
    apt-get update -qq || die "apt-get update failed: cannot reach Debian's package mirror"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
      || die "apt-get install postgresql failed"
    have_postgres || die "postgresql installed, but its server binaries are not under /usr/lib/postgresql/*/bin"
  else
    die "PostgreSQL's server binaries (initdb, postgres) are missing: as root run 'apt-get install postgresql', or set PG_BIN to their folder, or set DATABASE_URL and TEST_DATABASE_URL to a server"
  fi
fi

say "downloading Go modules…"
go mod download || die "go mod download failed: is the Go module proxy reachable?"

if [ -z "${S3_ENDPOINT:-}" ] || [ -z "${TEST_S3_ENDPOINT:-}" ]; then
  if [ ! -x .bin/versitygw ]; then
    say "building the versitygw S3 server into .bin/ (about two minutes, once)…"
    mkdir -p .bin
    (cd tools && go build -o ../.bin/versitygw.tmp github.com/versity/versitygw/cmd/versitygw) \
      || die "building versitygw failed: is the Go module proxy reachable?"
    mv .bin/versitygw.tmp .bin/versitygw
  fi
fi
say "ready"
