# The MOC upload service. `make help` lists the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go

# Every Lambda function: one directory per route under functions/.
FUNCTIONS := $(notdir $(patsubst %/,%,$(dir $(wildcard functions/*/main.go))))
BUILD_DIR := build
GOFLAGS_LAMBDA := -tags lambda.norpc,nodynamic,grpcnotrace -trimpath -ldflags='-s -w'

.PHONY: help local test build deps seed replay wipe migrate lint clean http traces http-ci evidence

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

# make chaos: the fault suite's long form (local/chaos): 12 users through the whole upload flow
# while toxiproxy, in the test process, makes PostgreSQL and S3 slow, reset their connections,
# freeze them and restart them; then S3 and the database are checked directly. About 2 minutes.
# The figures go to .local/chaos-report.md (docs/reliability.md says what each check means);
# CHAOS_LOG=<file> keeps the stack's logs, CHAOS_RECORDS=<file> every request (JSON lines);
# CHAOS_FLAGS passes more (-chaos.users=24, -chaos.no-deadline).
# `make test` runs the short form (under 20 s).
.PHONY: chaos
chaos: ## the fault suite, long form: concurrent uploads while PostgreSQL and S3 lag, reset, freeze, restart (~2 min)
	@bash scripts/deps.sh
	@mkdir -p .local
	$(GO) test -count=1 -timeout 10m -run 'TestChaos' -v ./local/chaos -chaos.long -chaos.report $(CURDIR)/.local/chaos-report.md $(CHAOS_FLAGS)

build: $(addprefix $(BUILD_DIR)/,$(addsuffix /bootstrap,$(FUNCTIONS))) ## build every function as build/<Name>/bootstrap (linux/arm64)

$(BUILD_DIR)/%/bootstrap: FORCE
	@mkdir -p $(@D)
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(GOFLAGS_LAMBDA) -o $@ ./functions/$*
FORCE:

# `sam build` runs build-<LogicalId> with ARTIFACTS_DIR set (BuildMethod: makefile),
# for every function of template.yaml, the Migrate and HttpAuthorizer ones included
# (functions/makebuild_test.go builds each this way). samconfig.toml's build_in_source
# runs it here rather than in a copy of the repository (with .local/ and .bin/).
build-%Function:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(GOFLAGS_LAMBDA) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$*

# seed and replay join the stack `make local` runs (PostgreSQL on LOCAL_PG_PORT, S3 on
# LOCAL_S3_PORT, data in .local/): they use its services when they answer there, else start
# them for the command; they say which on their first line.
seed: deps $(MOC_LOCAL) ## load the sample rows into the stack on LOCAL_PG_PORT/LOCAL_S3_PORT (make local's, or started for it)
	@$(MOC_LOCAL) seed

replay: $(MOC_LOCAL) ## run a function on a sample event, on the stack's ports: make replay FN=GetSession [EVENT=events/GetSession.json]; no FN lists them
	@$(MOC_LOCAL) replay -fn '$(FN)' -event '$(or $(EVENT),events/$(FN).json)'

# make http: the seed-test evidence of story 01727 (__http__/*.http), sent by httpyac (Node.js, via
# npx) to a stack that is already running; exits non-zero when a request or an assertion fails.
# gen-data.mjs first writes the uploaded bytes into __http__/.data/ (git-ignored). Each run is a new
# user (HTTP_USER), since a user may open only 100 sessions a day. MAX_BATCH_BYTES, when set, must be
# the stack's own value. httpyac runs under __http__/hook-receiver.mjs, a webhook receiver on
# 127.0.0.1:HOOK_PORT that lives exactly as long as the run (WH-HP-001 reads its GET /deliveries)
# and verifies signatures with HOOK_SECRET, so the stack must post there with that secret
# (MOC_FINALIZE_WEBHOOK_URL=http://127.0.0.1:3090/hooks, MOC_FINALIZE_WEBHOOK_SECRET=<HOOK_SECRET>),
# and export its traces to the same receiver (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:3090
# OTEL_EXPORTER_OTLP_PROTOCOL=http/json OTEL_BSP_SCHEDULE_DELAY=500; OT-HP-001 reads them), with
# LOCAL_AWS_PAYLOAD_LIMITS=off ENABLE_THUMBNAIL_GENERATION=true: the .http file's header has the whole
# command. HTTP_WS is the stack's WebSocket API (LOCAL_WS_ADDR).
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

# make http-ci: make http against a stack of its own, as CI runs it (.ci/run). .bin/moc-evidence
# starts the stack in one process, on free loopback ports, configured as the .http file's header
# says (no AWS payload limits, thumbnails on, webhooks and OTLP/JSON traces to the receiver of make
# http on HOOK_PORT, signed with HOOK_SECRET), runs make http with HTTP_API and HTTP_WS pointing at
# it, and stops it; it fails when make http fails.
# make evidence: writes docs/evidence/STORY-01727.md (generated: never edit it by hand) from a real
# run of the seed story against a stack the command starts and stops; see local/evidence.
EVIDENCE := .bin/moc-evidence
$(EVIDENCE): FORCE
	@$(GO) build -o $@ ./local/cmd/moc-evidence
http-ci: deps $(EVIDENCE) ## make http against a stack it starts on free ports (what CI runs); needs Node.js
	@HOOK_PORT='$(HOOK_PORT)' HOOK_SECRET='$(HOOK_SECRET)' $(EVIDENCE) stack -- $(MAKE) -s http
evidence: deps $(EVIDENCE) ## write docs/evidence/STORY-01727.md from a real run against a stack it starts
	@$(EVIDENCE) write -out docs/evidence/STORY-01727.md

migrate: $(MOC_LOCAL) ## apply the migrations to DATABASE_URL (e.g. a deployed database)
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL" >&2; exit 2; }
	@$(MOC_LOCAL) migrate

wipe: ## delete make local's data (.local/: database and objects)
	rm -rf .local

# cfn-lint also expands the SAM transform; template.yaml's Metadata says
# why its one ignored rule (W1030) is ignored.
lint: ## gofmt, go vet, staticcheck, cfn-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }
	$(GO) vet ./...
	@cd tools && $(GO) build -o ../.bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	.bin/staticcheck -checks all,-ST1000,-ST1003 ./...
	@command -v cfn-lint >/dev/null || { echo "make lint: needs cfn-lint (pip install cfn-lint)" >&2; exit 1; }
	cfn-lint template.yaml

clean: ## remove build output
	rm -rf $(BUILD_DIR)
