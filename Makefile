# syftchaos: `make chaos-run` runs a chaos plan, `make test` runs every test. Both build what they need.
# Needs: a running Docker engine (root or the docker group), cargo. See README.md.

PLAN ?= chaos-plans/smoke.yaml
CARGO ?= cargo
CHAOS := target/debug/chaos
# The release build, for the long and the large runs (`make nightly`, `make bench-scale`): at 100
# peers the debug build's own CPU is the larger part of what the orchestrator takes from the peers
# (docs/BENCHMARKS.md, "The release `chaos`").
CHAOS_RELEASE := target/release/chaos
# Extra flags for `chaos run`, e.g. ARGS="--seed 7 --flavor legacy".
ARGS ?=
# `make nightly`: how long its soak runs (`chaos soak --duration`, e.g. 30m, 8h), and which plan it soaks.
NIGHTLY_DURATION ?= 30m
NIGHTLY_SOAK_PLAN ?= chaos-plans/soak.yaml

.PHONY: all chaos-run image chaos chaos-release test unit-test lint validate bench bench-scale nightly compare mutants clean ps help

all: chaos image

help:
	@echo "make chaos-run [PLAN=chaos-plans/<plan>.yaml] [ARGS=...]  run one plan (default: smoke)"
	@echo "make test        unit tests, Docker tests, lint (what CI runs)"
	@echo "make image       build the peer and tools images offline (syftchaos/peer:latest, syftchaos/tools:latest)"
	@echo "make validate    check every plan in chaos-plans/ without starting anything"
	@echo "make nightly [NIGHTLY_DURATION=30m]  a soak (chaos soak), then every plan in chaos-plans/ once (release build of chaos)"
	@echo "make mutants     every syncpeer mutant under its plan, the honest daemon on the same: the mutation matrix"
	@echo "make compare     every plan on syncpeer and Syncthing, one Markdown table (docs/DAEMONS.md)"
	@echo "make bench       benchmarks (results go to docs/BENCHMARKS.md by hand)"
	@echo "make bench-scale [SIZES=10,25] [TOPOLOGIES=ring,tree] [REPEAT=3]  the scaling benchmark: N peers x topology, table + JSON + SVG in reports/bench-scale/"
	@echo "make clean       remove what killed runs left behind (chaos clean; live runs are spared)"

chaos:
	$(CARGO) build -p syftchaos --bin chaos

chaos-release:
	$(CARGO) build --release -p syftchaos --bin chaos

image:
	peer-image/scripts/build-image.sh

chaos-run: chaos image
	$(CHAOS) run $(PLAN) $(ARGS)

validate: chaos
	$(CHAOS) validate chaos-plans/*.yaml

# The Docker tests need the peer image; they fail loudly under CI=true if it is missing.
test: image lint
	scripts/ensure-test-tools.sh && $(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench --workspace

# The scaling benchmark (issue 16 item 1): a generated plan per peer count x topology (calm writes,
# then a halves partition with writes on both sides, then the heal), run one after another; a
# Markdown table, bench-scale.json and bench-scale.svg in BENCH_SCALE_OUT (docs/BENCHMARKS.md, "Scaling").
# Exits 1 when a seed goal is missed. SIZES (default 10,25,50,100), TOPOLOGIES (ring,tree,random,full-mesh),
# MESH_MAX (largest full mesh, default 25), REPEAT (runs per cell, medians; default 1).
SIZES ?=
TOPOLOGIES ?=
MESH_MAX ?=
REPEAT ?=
BENCH_SCALE_OUT ?= reports/bench-scale
bench-scale: chaos-release image
	scripts/bench-scale.py --chaos $(CHAOS_RELEASE) --out $(BENCH_SCALE_OUT) $(if $(SIZES),--sizes $(SIZES)) $(if $(TOPOLOGIES),--topologies $(TOPOLOGIES)) \
	  $(if $(MESH_MAX),--mesh-max $(MESH_MAX)) $(if $(REPEAT),--repeat $(REPEAT))

# The nightly job: a soak of NIGHTLY_SOAK_PLAN for NIGHTLY_DURATION (`chaos soak`: window by window,
# each healed and judged alone), then every plan once, one after another; exits non-zero if anything
# did not end as it should: valid (exit 0), except the legacy-* plans, which run the seed's original
# design and must be caught (exit 1). Every run keeps its results in reports/; the peers' files of
# valid runs are removed and only the newest 50 run folders are kept (`--keep-runs`, README
# "Retention"); reports/index.html shows the trends per plan and daemon.
nightly: chaos-release image
	@failed=0; \
	echo "=== soak $(NIGHTLY_SOAK_PLAN) for $(NIGHTLY_DURATION) (expect exit 0)"; \
	$(CHAOS_RELEASE) soak $(NIGHTLY_SOAK_PLAN) --duration $(NIGHTLY_DURATION); got=$$?; \
	if [ $$got -ne 0 ]; then echo "=== soak: exit $$got, expected 0"; failed=$$((failed+1)); fi; \
	for p in chaos-plans/*.yaml; do \
	  if grep -q '^soak:' $$p; then echo "=== $$p: a soak plan, not for chaos run (skipped)"; continue; fi; \
	  want=0; case $$p in */legacy-*) want=1;; esac; \
	  echo "=== $$p (expect exit $$want)"; $(CHAOS_RELEASE) run $$p; got=$$?; \
	  if [ $$got -ne $$want ]; then echo "=== $$p: exit $$got, expected $$want"; failed=$$((failed+1)); fi; \
	done; \
	echo "=== the mutation matrix (scripts/mutants.py, expect exit 0)"; scripts/mutants.py --chaos $(CHAOS_RELEASE); got=$$?; \
	if [ $$got -ne 0 ]; then echo "=== mutants: exit $$got, expected 0"; failed=$$((failed+1)); fi; \
	echo "nightly: $$failed step(s) did not end as expected"; test $$failed -eq 0

# Every plan (but scale-100 and soak plans) on each daemon under test; a plan a daemon cannot take is
# listed with the reason. PEERS="syncpeer syncthing" by default.
compare: chaos image
	PLANS="$$(grep -L '^soak:' chaos-plans/*.yaml | grep -v scale-100)" scripts/compare-daemons.sh

# The mutation matrix (issue 15): each `mutant-*` flavor of syncpeer (one deliberate bug) under the
# plan that should expose it, and the honest daemon on the same plans; exits non-zero unless every
# mutant is caught by exactly its check(s) and the honest daemon is valid. Its last result is in
# docs/COVERAGE.md. MUTANTS_ARGS="--only default mutant-echo-loop" runs some rows only.
MUTANTS_ARGS ?=
mutants: chaos image
	scripts/mutants.py $(MUTANTS_ARGS)

clean: chaos
	$(CHAOS) clean

ps: chaos
	$(CHAOS) ps
