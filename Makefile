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

# checkov pins boto3==1.35.49 and aws-sam-cli pins boto3==1.43.108, so checkov gets a venv
# of its own; the stamp names the version, so changing the pin reinstalls it.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# checkov offline: no Prisma Cloud guideline download, no PyPI update check. Every skipped
# check is justified in the resource's Metadata.checkov.skip of template.yaml.
template: $(STAMP) $(CHECKOV_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam validate --lint --region us-east-1
	BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE $(CHECKOV_VENV)/bin/checkov \
		--file template.yaml --framework cloudformation --skip-download --compact --quiet

e2e: $(STAMP) build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q tests

test: $(STAMP) lint unit template e2e

# Calls per request (moto), handler time without I/O, binary sizes; then criterion's timings.
bench: $(STAMP)
	cargo build --release -p token -p customer
	cargo bench -p shared --bench report
	cargo bench -p shared --bench handlers

# Release Lambda artifacts in .aws-sam/build (SAM's rust-cargolambda beta builder, enabled by
# samconfig.toml). x86_64 is the CI build; deploy with the same Architecture value.
release: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AWS_LC_SYS_NO_JITTER_ENTROPY=1 SAM_CLI_TELEMETRY=0 sam build --parameter-overrides Architecture=x86_64
	ls -l .aws-sam/build/*/bootstrap

clean:
	cargo clean
	rm -rf $(VENV) .local
