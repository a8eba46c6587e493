# The MOC upload service. `make help` lists the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go

# Every Lambda function: one directory per route under functions/.
FUNCTIONS := $(notdir $(patsubst %/,%,$(dir $(wildcard functions/*/main.go))))
BUILD_DIR := build
GOFLAGS_LAMBDA := -tags lambda.norpc,nodynamic,grpcnotrace -trimpath -ldflags='-s -w'

.PHONY: help local test build deps seed replay wipe migrate lint fuzz bench clean http traces

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

deps: ## install what the stack needs (PostgreSQL server, versitygw); idempotent
	@bash scripts/deps.sh

MOC_LOCAL := .bin/moc-local
$(MOC_LOCAL): FORCE
	@$(GO) build -o $@ ./local/cmd/moc-local

local: deps $(MOC_LOCAL) ## run the whole stack locally: PostgreSQL, S3 (versitygw), HTTP API :3000, WebSocket :3001, Lambda :3002
	@$(MOC_LOCAL)

# make traces: `make local` exporting its traces to Jaeger (OTLP/HTTP on 127.0.0.1:4318, in-memory),
# query API on http://127.0.0.1:16686/api/traces?service=moc-upload. scripts/jaeger.sh builds
# .bin/jaeger the first time (about 4 minutes; not in go.mod nor tools/go.mod, and only this target
# builds it), starts it, waits for it, runs the stack and stops both on Ctrl-C.
traces: deps $(MOC_LOCAL) ## make local, traced: Jaeger (built once, ~4 min) on :4318 (OTLP) and :16686 (query API)
	@bash scripts/jaeger.sh traces

test: ## run every test: unit, integration (real PostgreSQL + S3), end-to-end, browser
	@bash scripts/deps.sh --tests
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

build: $(addprefix $(BUILD_DIR)/,$(addsuffix /bootstrap,$(FUNCTIONS))) ## build every function as build/<Name>/bootstrap (linux/arm64)

$(BUILD_DIR)/%/bootstrap: FORCE
	@mkdir -p $(@D)
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(GOFLAGS_LAMBDA) -o $@ ./functions/$*
FORCE:

# `sam build` runs build-<LogicalId> with ARTIFACTS_DIR set (BuildMethod: makefile).
build-%Function:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(GOFLAGS_LAMBDA) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$*

seed: deps $(MOC_LOCAL) ## load the sample sessions and files (local/devstack/seed.sql)
	@$(MOC_LOCAL) seed

replay: ## run one function on a sample event: make replay FN=GetSession EVENT=events/GetSession.json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make replay FN=<Function> EVENT=events/<file>.json" >&2; exit 2; }
	@$(MAKE) -s $(MOC_LOCAL)
	@$(MOC_LOCAL) replay -fn $(FN) -event $(EVENT)

# make http: the seed-test evidence of story 01727 (__http__/*.http), sent by httpyac (Node.js, via
# npx) to a stack that is already running; exits non-zero when a request or an assertion fails.
# gen-data.mjs first writes the uploaded bytes into __http__/.data/ (git-ignored). Each run is a new
# user (HTTP_USER), since a user may open only 100 sessions a day. MAX_BATCH_BYTES, when set, must be
# the stack's own value. httpyac runs under __http__/hook-receiver.mjs, a webhook receiver on
# 127.0.0.1:HOOK_PORT that lives exactly as long as the run (WH-HP-001 reads its GET /deliveries)
# and verifies signatures with HOOK_SECRET, so the stack must post there with that secret
# (MOC_FINALIZE_WEBHOOK_URL=http://127.0.0.1:3090/hooks, MOC_FINALIZE_WEBHOOK_SECRET=<HOOK_SECRET>;
# the .http file's header has the whole command). HTTP_WS is the stack's WebSocket API (LOCAL_WS_ADDR).
HTTP_API ?= http://127.0.0.1:3000
HTTP_WS ?= ws://127.0.0.1:3001
HOOK_PORT ?= 3090
HOOK_SECRET ?= whsec_YCfk1+iNbnQB8d7tjVBM+w86J/8QFeaW8aJV/c0jp9U=
HTTP_FILE ?= __http__/story-01727-performance-observability.http
HTTPYAC ?= npx --yes httpyac@6.16.7
http: ## send __http__/'s requests with httpyac to HTTP_API, HTTP_WS and a webhook receiver on HOOK_PORT; starts no stack (the .http file's header says how)
	@command -v node >/dev/null || { echo "make http: needs Node.js (node and npx)" >&2; exit 1; }
	@node __http__/gen-data.mjs
	HTTP_API='$(HTTP_API)' HTTP_WS='$(HTTP_WS)' HOOK_URL='http://127.0.0.1:$(HOOK_PORT)' \
	  HOOK_PORT='$(HOOK_PORT)' HOOK_SECRET='$(HOOK_SECRET)' \
	  HTTP_USER="$${HTTP_USER:-http-$$(date +%Y%m%d%H%M%S)-$$$$}" \
	  node __http__/hook-receiver.mjs $(HTTPYAC) send $(HTTP_FILE) --all --output short --output-failed response

migrate: $(MOC_LOCAL) ## apply the migrations to DATABASE_URL (e.g. a deployed database)
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL" >&2; exit 2; }
	@$(MOC_LOCAL) migrate

wipe: ## delete make local's data (.local/: database and objects)
	rm -rf .local

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }
	$(GO) vet ./...
	@cd tools && $(GO) build -o ../.bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	.bin/staticcheck -checks all,-ST1000,-ST1003 ./...

clean: ## remove build output
	rm -rf $(BUILD_DIR)
