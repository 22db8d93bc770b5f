# The two commands of the README. Each prepares a fresh machine itself (scripts/bootstrap.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench chaos

setup:
	scripts/bootstrap.sh $(VENV)

## The main job: the pause scenario on real local etcd and ZooKeeper servers it starts itself.
demo: setup
	$(BIN)/fencing-coord demo

## Everything: lint, types, the whole suite against real servers the tests start.
test: setup lint
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/gate.py
	$(BIN)/python bench/etcd.py
	$(BIN)/python bench/zookeeper.py
	$(BIN)/python bench/redis_backend.py

## The fault campaign on both backends (README "Fault campaign"); as root it adds partitions.
## make chaos CHAOS_SECONDS=1800 CHAOS_SEED=7 for the long campaign.
CHAOS_SECONDS ?= 300
CHAOS_SEED ?= 1
chaos: setup
	$(BIN)/python -m fencing_coord.testing.chaos --backend etcd --seconds $(CHAOS_SECONDS) --seed $(CHAOS_SEED)
	$(BIN)/python -m fencing_coord.testing.chaos --backend zookeeper --seconds $(CHAOS_SECONDS) --seed $(CHAOS_SEED)
