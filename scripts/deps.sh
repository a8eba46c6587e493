#!/usr/bin/env bash
# Installs what the local stack and the tests need, when it is missing:
#   - Go (checked, not installed: expected in /usr/local/go/bin or on PATH),
#   - PostgreSQL's server binaries (Debian's postgresql package, as root),
#     found like local/stack.FindPostgresBin: $PG_BIN, else initdb on PATH,
#     else the newest /usr/lib/postgresql/<version>/bin,
#   - the postgres system user, which runs the server when we are root,
#   - the Go modules and the versitygw S3 server, built into .bin/,
#   - with --tests, the AWS Lambda Runtime Interface Emulator
#     (aws-lambda-rie, into .bin/) and Chromium (Debian's chromium package, as root or with
#     password-free sudo), which the browser test of local/e2e runs headless;
#     optional: when it cannot be installed that test is skipped.
# Idempotent: a second run only checks. Says what it does; when it cannot
# go on, it says what is missing and exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: %s\n' "$*" >&2; exit 1; }

# --- Go -------------------------------------------------------------------
command -v go >/dev/null \
  || die "Go is missing (looked on PATH and in /usr/local/go/bin): install Go 1.26 (the Go project's release archive) into /usr/local/go"
say "Go: $(go version)"

# --- PostgreSQL -----------------------------------------------------------
has_server_binaries() { [ -x "$1/initdb" ] && [ -x "$1/postgres" ]; }

# Prints the folder of initdb and postgres, like FindPostgresBin.
find_postgres_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    has_server_binaries "$PG_BIN" && { printf '%s\n' "$PG_BIN"; return 0; }
    return 1
  fi
  local initdb dir
  if initdb=$(command -v initdb); then
    dir=$(dirname "$(readlink -f "$initdb")")
    has_server_binaries "$dir" && { printf '%s\n' "$dir"; return 0; }
    dir=$(dirname "$initdb")
    has_server_binaries "$dir" && { printf '%s\n' "$dir"; return 0; }
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
    has_server_binaries "$dir" && { printf '%s\n' "$dir"; return 0; }
  done
  return 1
}

ensure_postgres() {
  if [ -n "${PG_BIN:-}" ] && ! has_server_binaries "$PG_BIN"; then
    die "PG_BIN=$PG_BIN does not hold PostgreSQL's initdb and postgres: fix or unset it"
  fi
  if pg_bin=$(find_postgres_bin); then
    say "PostgreSQL: $("$pg_bin/postgres" --version) in $pg_bin"
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    die "install PostgreSQL 15 server (Debian package postgresql) or set PG_BIN"
  fi
  command -v apt-get >/dev/null \
    || die "install PostgreSQL 15 server (Debian package postgresql) or set PG_BIN: no apt-get here"
  say "PostgreSQL: not found; installing Debian's postgresql (apt-get update && apt-get install postgresql)"
  apt-get update || die "apt-get update failed: is Debian's package mirror reachable?"
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql \
    || die "apt-get install postgresql failed"
  pg_bin=$(find_postgres_bin) \
    || die "postgresql is installed, but initdb and postgres are not under /usr/lib/postgresql/*/bin: set PG_BIN"
  say "PostgreSQL: installed $("$pg_bin/postgres" --version) in $pg_bin"
}

pg_bin=
if [ -n "${DATABASE_URL:-}" ] && [ -n "${TEST_DATABASE_URL:-}" ]; then
  say "PostgreSQL: DATABASE_URL and TEST_DATABASE_URL are set; not needed here"
else
  ensure_postgres
fi

# As root, PostgreSQL runs as the postgres user (it refuses root). The
# Debian package creates that user; a PG_BIN build may not have.
if [ -n "$pg_bin" ] && [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  say "creating the postgres system user, which runs PostgreSQL when we are root"
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    || die "useradd postgres failed"
fi

# --- Go modules -----------------------------------------------------------
say "Go modules: downloading what go.mod and tools/go.mod need (cached after the first time)"
go mod download || die "go mod download failed: is the Go module proxy reachable?"
(cd tools && go mod download) || die "go mod download in tools/ failed: is the Go module proxy reachable?"

# --- tools built into .bin/ ------------------------------------------------
# build_tool NAME PACKAGE ENV_VAR DURATION: makes .bin/NAME from the tools
# module unless $ENV_VAR points at a binary. local/stack.ToolBinary takes the
# same lock file when it builds a missing tool, so the two never race.
build_tool() {
  local name=$1 pkg=$2 var=$3 duration=$4 bin=.bin/$1 tmp
  if [ -n "${!var:-}" ]; then
    [ -x "${!var}" ] || die "$var=${!var} is not an executable: fix or unset it"
    say "$name: using $var=${!var}"
    return
  fi
  if [ -x "$bin" ]; then
    say "$name: $bin is built"
    return
  fi
  mkdir -p .bin
  exec 9>".bin/.$name.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if [ -x "$bin" ]; then
    say "$name: $bin was built meanwhile"
  else
    say "$name: building $bin from tools/go.mod ($duration, once)"
    tmp=$(mktemp ".bin/.$name-XXXXXX.tmp")
    (cd tools && go build -o "../$tmp" "$pkg") \
      || { rm -f "$tmp"; die "building $name failed: is the Go module proxy reachable?"; }
    mv -f "$tmp" "$bin"
    say "$name: built $bin"
  fi
  exec 9>&-
}

if [ -n "${S3_ENDPOINT:-}" ] && [ -n "${TEST_S3_ENDPOINT:-}" ]; then
  say "versitygw: S3_ENDPOINT and TEST_S3_ENDPOINT are set; not needed here"
else
  build_tool versitygw github.com/versity/versitygw/cmd/versitygw VERSITYGW "about two minutes"
fi
# The Lambda Runtime Interface Emulator, which functions/bootstrap_test.go
# runs the built functions under: the tests' only (--tests), not the stack's.
if [ "${1:-}" = "--tests" ]; then
  build_tool aws-lambda-rie github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie \
    AWS_LAMBDA_RIE "about half a minute"
fi

# --- Chromium ---------------------------------------------------------------
# local/e2e's TestBrowserCORS loads pages in headless Chromium (/usr/bin/chromium,
# or $CHROMIUM) to check the API's and the bucket's CORS rules in a real
# browser. Optional: without it that test is skipped, so a failed install is
# reported and the rest goes on.
chromium_version() { "$1" --version 2>/dev/null || echo "version unknown"; }

# as_root CMD...: runs CMD as root, directly or through password-free sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install_chromium() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
}

ensure_chromium() {
  if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] || die "CHROMIUM=$CHROMIUM is not an executable: fix or unset it"
    say "Chromium: using CHROMIUM=$CHROMIUM ($(chromium_version "$CHROMIUM"))"
    return 0
  fi
  if [ -x /usr/bin/chromium ]; then
    say "Chromium: $(chromium_version /usr/bin/chromium)"
    return 0
  fi
  local skipped="the browser test (local/e2e TestBrowserCORS) will be skipped"
  if [ "$(id -u)" != 0 ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
    say "Chromium: /usr/bin/chromium is missing and installing it needs root (or password-free sudo): $skipped; install Debian's chromium package to run it"
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    say "Chromium: /usr/bin/chromium is missing and there is no apt-get here: $skipped; install Debian's chromium package or set CHROMIUM to run it"
    return 0
  fi
  say "Chromium: not found; installing Debian's chromium (apt-get install chromium: about 150 MB to download, 450 MB on disk, once)"
  if ! apt_install_chromium; then
    say "Chromium: apt-get install chromium failed; updating the package lists (apt-get update) and trying again"
    if ! as_root apt-get update || ! apt_install_chromium; then
      say "Chromium: apt-get install chromium failed: $skipped; install Debian's chromium package to run it"
      return 0
    fi
  fi
  if [ ! -x /usr/bin/chromium ]; then
    say "Chromium: the chromium package is installed but /usr/bin/chromium is not there: $skipped; set CHROMIUM to run it"
    return 0
  fi
  say "Chromium: installed $(chromium_version /usr/bin/chromium)"
}

# Only the tests need a browser: `make test` passes --tests.
if [ "${1:-}" = "--tests" ]; then
  ensure_chromium
fi

say "ready"
