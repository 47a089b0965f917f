# Two commands on a fresh machine: `make demo` and `make test`.
# Every target installs what it needs: `.venv` is (re)built when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser sshd brokers promtool test lint typecheck pytest demo smoke bench load-distributed dist image clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wsload needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Headless Chromium for the browser tests, from Debian's package; without it
# (not root, no apt) those tests are skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's chromium for the browser tests" && \
	  apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; \
	} || echo "chromium not installed: the browser tests will be skipped"

# openssh-server for the system test of `make load-distributed`, which starts its own sshd
# in network namespaces. Without root nothing is installed and that test is skipped.
sshd:
	@test -x /usr/sbin/sshd || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's openssh-server for the load-distributed system test" && \
	  apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null 2>&1; \
	} || echo "openssh-server not installed: the load-distributed system test will be skipped"

# The brokers of the protocol tests (STOMP over RabbitMQ's Web-STOMP, MQTT over
# Mosquitto's WebSocket listener), from Debian's packages; the tests start their
# own private instances on loopback. Without root those tests are skipped.
brokers:
	@{ command -v rabbitmq-server >/dev/null 2>&1 || test -x /usr/sbin/rabbitmq-server; } && \
	  { command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; } || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's rabbitmq-server and mosquitto for the protocol tests" && \
	  apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server mosquitto >/dev/null 2>&1 && \
	  { systemctl disable --now rabbitmq-server mosquitto >/dev/null 2>&1; \
	    service rabbitmq-server stop >/dev/null 2>&1; service mosquitto stop >/dev/null 2>&1; true; }; \
	} || echo "rabbitmq-server/mosquitto not installed: the STOMP/MQTT tests will be skipped"

# Prometheus' promtool (Debian's prometheus package) checks what /metrics serves
# in the metrics test. Without root nothing is installed and that check is skipped.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's prometheus (promtool) for the metrics test" && \
	  apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null 2>&1 && \
	  { systemctl disable --now prometheus >/dev/null 2>&1; \
	    service prometheus stop >/dev/null 2>&1; true; }; \
	} || echo "prometheus (promtool) not installed: the promtool check will be skipped"

pytest: $(STAMP) browser sshd brokers promtool
	$(BIN)/pytest --timeout=60 -q -n 3 --dist worksteal

test: lint typecheck pytest

# The main job on a fresh machine: reference server + local workers + a real load.
demo: $(STAMP)
	$(BIN)/wsload run --demo --num-clients 50 --duration 10 --interval 0.1

# CI smoke load: reference server, 2 local workers, 10 s, thresholds, JUnit report.
SMOKE_THRESHOLDS := --threshold 'success_rate>=99.9' --threshold 'p99<250ms' --threshold 'timeouts==0'
smoke: $(STAMP)
	$(BIN)/wsload run --demo --workers 2 --num-clients 20 --duration 10 --interval 0.05 \
	    $(SMOKE_THRESHOLDS) --junit smoke-junit.xml --json smoke-summary.json --quiet

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Coordinator here, workers over ssh on HOSTS: `deploy/load-distributed.sh --help` lists
# the variables (HOSTS, COORDINATOR, WORKERS_PER_HOST, KEYS, ARGS, ...).
load-distributed: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" deploy/load-distributed.sh

# The sdist and the wheel in dist/ (the wheel built from the sdist, so the sdist is
# known complete), checked as PyPI would render them.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# The container image (Dockerfile) with docker or podman, whichever can build here;
# where neither can, one line says why and make fails before building anything.
IMAGE ?= wsload:latest
image: $(STAMP)
	@deploy/image.sh --check
	@$(MAKE) --no-print-directory dist
	deploy/image.sh $(IMAGE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
