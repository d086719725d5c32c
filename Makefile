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

# Defined before the rule that names it (make expands prerequisites as it reads them).
RELEASE_TEMPLATE := .aws-sam/build/template.yaml

# panva's oauth4webapi for the interop test (tests/interop/oauth4webapi.mjs), pinned, installed
# with the machine's Node.js and npm into .tools/node (not in git).
OAUTH4WEBAPI_VERSION := 3.8.8
NODE_TOOLS := .tools/node
OAUTH4WEBAPI_STAMP := $(NODE_TOOLS)/.installed-oauth4webapi-$(OAUTH4WEBAPI_VERSION)

$(OAUTH4WEBAPI_STAMP):
	mkdir -p $(NODE_TOOLS)
	npm install --silent --no-audit --no-fund --prefix $(NODE_TOOLS) oauth4webapi@$(OAUTH4WEBAPI_VERSION)
	touch $@

e2e: $(STAMP) build $(RELEASE_TEMPLATE) $(OAUTH4WEBAPI_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q tests

test: $(STAMP) lint unit template e2e

# Calls per request (moto), handler time without I/O, binary sizes; criterion's timings; then
# the release functions behind a local Lambda Runtime API (cold init, round trip, peak RSS, zip
# sizes, and the 50,000-request soak per function, which fails the target on 1 MB of peak-RSS
# growth; infra/bench/runtime_api.py).
bench: $(STAMP)
	cargo build --release -p token -p customer
	cargo bench -p shared --bench report
	cargo bench -p shared --bench handlers
	$(PY) infra/bench/runtime_api.py

# Release Lambda artifacts in .aws-sam/build (SAM's rust-cargolambda beta builder, enabled by
# samconfig.toml). The architecture has one source: the Architecture= value of
# parameter_overrides in samconfig.toml, which sam build, sam deploy and sam sync all read
# (default arm64, as the template). `make release ARCH=x86_64` rewrites every such value first, so
# a later `sam deploy` ships what was built; tests/test_template.py checks each bootstrap's
# ELF machine against it. cargo-lambda cross-compiles with the venv's pinned zig (ziglang).
SAMCONFIG_ARCH := $(shell sed -nE 's/.*Architecture=\\?"?(arm64|x86_64).*/\1/p' samconfig.toml | head -n 1)
ARCH ?= $(SAMCONFIG_ARCH)
RUST_TARGET_arm64 := aarch64-unknown-linux-gnu
RUST_TARGET_x86_64 := x86_64-unknown-linux-gnu

release: $(STAMP)
	@case "$(ARCH)" in arm64|x86_64) ;; *) echo "ARCH must be arm64 or x86_64 (got '$(ARCH)')"; exit 2;; esac
	@sed -E 's/Architecture=(\\?"?)(arm64|x86_64)/Architecture=\1$(ARCH)/g' samconfig.toml > samconfig.toml.new; \
	if cmp -s samconfig.toml samconfig.toml.new; then rm samconfig.toml.new; else \
		mv samconfig.toml.new samconfig.toml; \
		echo "samconfig.toml: Architecture=$(ARCH) (read by sam build, sam deploy and sam sync)"; \
	fi
	rustup target add $(RUST_TARGET_$(ARCH))
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam build
	ls -l .aws-sam/build/*/bootstrap

# make test checks the release artifacts (ELF machine = deployed Architecture), so a clone
# without them builds them once here; an existing build is checked as it is, never rebuilt.
$(RELEASE_TEMPLATE):
	$(MAKE) release

# Fuzzing with cargo-fuzz (libFuzzer + ASan) on the stable toolchain: fuzz/ is a crate of its
# own, outside the workspace. cargo-fuzz passes nightly-only flags (-Zsanitizer=address), which
# RUSTC_BOOTSTRAP=1 lets stable rustc accept. Each target runs FUZZ_SECONDS over its corpus
# (fuzz/corpus, not in git) and its seeds (fuzz/seeds); a crash, a panic or a 10 s input fails
# the target, leaves the input in fuzz/artifacts/TARGET/, and `make fuzz` fails after all ran.
# Reproduce with: RUSTC_BOOTSTRAP=1 .tools/bin/cargo-fuzz run TARGET fuzz/artifacts/TARGET/FILE
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := .tools/bin/cargo-fuzz
CARGO_FUZZ_STAMP := .tools/.installed-cargo-fuzz-$(CARGO_FUZZ_VERSION)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := token_request bearer_token jwt_verify dpop_proof

$(CARGO_FUZZ_STAMP):
	cargo install --locked --root .tools cargo-fuzz --version $(CARGO_FUZZ_VERSION)
	touch $@

fuzz: $(CARGO_FUZZ_STAMP)
	RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) build
	@failed=; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run $$target fuzz/corpus/$$target fuzz/seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
			|| failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crash in:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi

clean:
	cargo clean
	rm -rf $(VENV) .local .aws-sam
