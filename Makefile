# The README's two commands. Both work offline on a CPU.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONWARNINGS := ignore::FutureWarning

.PHONY: demo test test-all install lock check-lock clean-reports clean-results

# PYTHON=python3.x names the interpreter (default: the environment's own, else the newest
# supported one); naming one gives its own stamp (its whole path), so the environment is checked against it.
STAMP := $(VENV)/.installed$(if $(PYTHON),-$(subst /,_,$(PYTHON)))

$(STAMP): pyproject.toml requirements.lock tools/install.sh tools/uv_env.sh
	VENV=$(VENV) tools/install.sh
	touch $@

install: $(STAMP)

## lock: resolve pyproject.toml's ranges again into requirements.lock (the versions make installs), for
## Linux x86_64 / aarch64 and macOS arm64, Python 3.10-3.13; then check-lock
lock:
	tools/lock.sh

## check-lock: every pin of requirements.lock has a wheel on each of those platforms and Pythons
## (resolve only, nothing installed; needs the package registry, which `make test` does not)
check-lock:
	tools/check_lock.sh

## demo: build the environment, then write the report of every ready study on the toy world into reports/
STUDIES := toy-world prompt-failures distorted-latents unrelated-latents adversarial-tokens seed-shifts implosion prompt-audit

demo: $(STAMP)
	set -e; for s in $(STUDIES); do $(VENV)/bin/sagekit run $$s --out reports; done
	@echo "open reports/index.html"

## test: build the environment, then run the fast test suite (every notebook on the toy world)
test: $(STAMP)
	tools/install_chromium.sh
	$(PY) -m pytest -q

## test-all: also the slow tests (the other flow-matching notebooks, a Ray notebook run)
test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

clean-reports:
	find reports -mindepth 1 ! -name README.md -delete

## clean-results: forget every stored result (results/: images, judgments, search checkpoints, verdicts);
## the next `make demo` computes everything again
clean-results:
	rm -rf results
