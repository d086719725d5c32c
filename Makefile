# The two commands: `make run` (local stack on http://127.0.0.1:$${API_PORT:-9000}) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export AWS_LC_SYS_NO_JITTER_ENTROPY := 1
export SAM_CLI_TELEMETRY := 0
# Tests and tools never reach real AWS.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: run test venv lint unit e2e template build release bench fuzz clean

$(STAMP): infra/local/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r infra/local/requirements.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) infra/local/stack.py

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build:
	cargo build --workspace --bins

unit: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo test --workspace

template: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam validate --lint --region us-east-1

e2e: $(STAMP) build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q tests

test: $(STAMP) lint unit template e2e

release: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --bins

clean:
	cargo clean
	rm -rf $(VENV) .local
