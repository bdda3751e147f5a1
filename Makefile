# Two commands set everything up on a fresh machine:
#   make sandbox   run the service against a simulated AWS account (moto)
#   make test      lint, type-check and run the tests (UTC and Asia/Tokyo)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

$(BIN)/responder: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: sandbox test lint demo
sandbox: $(BIN)/responder
	$(BIN)/responder serve --sandbox --port $(PORT)

demo: $(BIN)/responder
	$(BIN)/responder demo --url http://127.0.0.1:$(PORT)

lint: $(BIN)/responder
	$(BIN)/ruff check responder tests benchmarks
	$(BIN)/ruff format --check responder tests benchmarks
	$(BIN)/mypy responder

# The report tests drive Debian's headless chromium; install it once (root or sudo).
test: lint
	command -v chromium >/dev/null || $$([ "$$(id -u)" = 0 ] || echo sudo) sh -c \
	  'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'
	TZ=UTC $(BIN)/pytest -n 2 -q
	TZ=Asia/Tokyo $(BIN)/pytest -n 2 -q
