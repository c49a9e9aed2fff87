# pgwork — build, run, test.
#
#   make            build build/pgwork
#   make run        demo: throwaway PostgreSQL (unless PGWORK_DATABASE_URL is
#                   set), migrate, supervisor on deploy/pgwork.example.conf
#   make test       unit + integration tests against a real PostgreSQL 15
#   make test SANITIZE=1   the same, built with ASan + UBSan (build/sanitize)
#   make lint       cppcheck, clang-format check, no function over 80 lines
#                   (scripts/long-functions.sh)
#   make format     apply clang-format
#   make deps       install missing Debian packages (as root)

SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD ?= build/sanitize
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD ?= build
SANFLAGS =
endif

CC ?= cc
PG_INCLUDE := $(shell pg_config --includedir 2>/dev/null)
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -D_GNU_SOURCE -I$(PG_INCLUDE) -I. $(SANFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS)
LDLIBS = -lpq -lconfuse -lmicrohttpd -lcrypto -lm -pthread
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -pthread)

SHARED_SRC := $(wildcard shared/*.c)
WORKER_SRC := $(wildcard worker/*.c)
SUPERVISOR_SRC := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c))
WEB_SRC := $(wildcard web/*.c)
MIGRATIONS := $(sort $(wildcard migrations/*.sql))

LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(SHARED_SRC) $(WORKER_SRC) $(SUPERVISOR_SRC) $(WEB_SRC)) \
           $(BUILD)/gen/migrations.o $(BUILD)/gen/web_assets.o
MAIN_OBJ := $(BUILD)/supervisor/main.o

UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(BUILD)/tests/unit_tests
INTEG_SRC := $(wildcard tests/integration/*.c)
INTEG_BIN := $(BUILD)/tests/integration_tests

.PHONY: all run test unit-tests integration-tests lint format deps clean check-deps

all: $(BUILD)/pgwork

$(BUILD)/pgwork: $(MAIN_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Migrations are embedded in the binary: the container needs no SQL files.
$(BUILD)/gen/migrations.c: $(MIGRATIONS) scripts/embed-migrations.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-migrations.sh $(MIGRATIONS) > $@

$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c
	$(CC) $(CFLAGS) -c -o $@ $<

# The dashboard's static files are embedded too: its own (web/assets/) and
# uPlot, vendored from npm at build time (web/assets/package-lock.json;
# `npm ci` runs again only when the lockfile changes).
UPLOT := web/assets/node_modules/uplot/dist
WEB_ASSETS := app.js=web/assets/app.js style.css=web/assets/style.css \
              uPlot.iife.min.js=$(UPLOT)/uPlot.iife.min.js uPlot.min.css=$(UPLOT)/uPlot.min.css

$(UPLOT)/uPlot.iife.min.js $(UPLOT)/uPlot.min.css &: web/assets/package-lock.json
	cd web/assets && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $(UPLOT)/uPlot.iife.min.js $(UPLOT)/uPlot.min.css

$(BUILD)/gen/web_assets.c: scripts/embed-assets.sh web/assets/app.js web/assets/style.css \
                           $(UPLOT)/uPlot.iife.min.js $(UPLOT)/uPlot.min.css
	@mkdir -p $(dir $@)
	sh scripts/embed-assets.sh $(WEB_ASSETS) > $@

$(BUILD)/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	$(CC) $(CFLAGS) -c -o $@ $<

# The pool's unit tests stand in for the worker and steer fork(),
# close_range() and opendir() (tests/unit/test_pool.c); the wrappers pass
# through otherwise.
UNIT_WRAPS = -Wl,--wrap=fork,--wrap=close_range,--wrap=opendir,--wrap=worker_main

$(UNIT_BIN): $(patsubst %.c,$(BUILD)/%.o,$(UNIT_SRC)) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(UNIT_WRAPS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

$(INTEG_BIN): $(patsubst %.c,$(BUILD)/%.o,$(INTEG_SRC)) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

check-deps:
	@sh scripts/deps.sh --check

deps:
	@sh scripts/deps.sh

run: check-deps $(BUILD)/pgwork
	@sh scripts/run-demo.sh $(BUILD)/pgwork

test: check-deps $(BUILD)/pgwork $(UNIT_BIN) $(INTEG_BIN)
	@sh tests/run.sh $(BUILD)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --std=c11 -D_GNU_SOURCE -I. shared supervisor worker web
	clang-format --dry-run --Werror $(shell git ls-files '*.c' '*.h')
	sh scripts/long-functions.sh

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- failure tests: helper programs, chaos, fuzzing (issue 4) ---------------
#
#   make chaos      long failure runs against a throwaway cluster (minutes):
#                   kill storms, PostgreSQL restarts and outage, valgrind;
#                   prints a table. CHAOS_TASKS (10000), CHAOS_OUTAGE_S (10),
#                   CHAOS_SCENARIOS (default all; see tests/chaos/chaos.c)
#   make torture    seeded random faults against two pods for TORTURE_SECONDS
#                   (120); invariants checked throughout; TORTURE_SEED replays,
#                   TORTURE_FAULTS / TORTURE_POISON pick kinds (torture.c)
#   make fuzz       libFuzzer (clang) over config parsing, notification
#                   payloads, conninfo redaction and cron schedules, FUZZ_SECONDS (default
#                   60) per target; findings in build/fuzz/artifacts/

TOOLS_SRC := $(wildcard tests/tools/*.c)
TOOLS_BIN := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOLS_SRC))

.PHONY: tools chaos torture fuzz fuzz-build

tools: $(TOOLS_BIN)

# Small standalone programs the tests drive (a silent-drop TCP proxy, ...).
$(BUILD)/tests/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# The integration tests find them next to the binary under test.
test: $(TOOLS_BIN)

# libFuzzer targets (tests/fuzz/fuzz_*.c) over the whole library, built with
# clang, ASan and UBSan in build/fuzz. Each runs FUZZ_SECONDS.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=gnu11 -Wall -D_GNU_SOURCE -I$(PG_INCLUDE) -I. $(FUZZ_SAN) -MMD -MP
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(SHARED_SRC) $(WORKER_SRC) $(SUPERVISOR_SRC)) \
                $(FUZZ_BUILD)/gen/migrations.o
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))

$(filter-out $(FUZZ_BUILD)/gen/%,$(FUZZ_LIB_OBJ)): $(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/gen/migrations.c: $(MIGRATIONS) scripts/embed-migrations.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-migrations.sh $(MIGRATIONS) > $@

$(FUZZ_BUILD)/gen/migrations.o: $(FUZZ_BUILD)/gen/migrations.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BIN): $(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The chaos and torture drivers: standalone programs (libpq, the helpers of
# tests/chaos/chaoslib.c) run by tests/chaos/run.sh.
$(BUILD)/tests/chaos/chaos: $(BUILD)/tests/chaos/chaos.o $(BUILD)/tests/chaos/chaoslib.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lpq -lpthread

chaos: check-deps $(BUILD)/pgwork $(BUILD)/tests/chaos/chaos
	@sh tests/chaos/run.sh $(BUILD) $(CHAOS_SCENARIOS)

# make torture: the seeded random run (tests/chaos/torture.c). TORTURE_SEED
# replays a run; SANITIZE=1 runs the ASan + UBSan build, 45 s by default.
TORTURE_SECONDS ?= $(if $(filter 1,$(SANITIZE)),45,120)
TORTURE_SEED ?=
TORTURE_FAULTS ?=
TORTURE_POISON ?=

$(BUILD)/tests/chaos/torture: $(BUILD)/tests/chaos/torture.o $(BUILD)/tests/chaos/chaoslib.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lpq -lpthread

$(BUILD)/tests/chaos/torture_handler: tests/chaos/torture_handler.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

torture: check-deps $(BUILD)/pgwork $(BUILD)/tests/chaos/torture \
         $(BUILD)/tests/chaos/torture_handler $(BUILD)/tests/tools/tcpproxy
	@CHAOS_PROGRAM=torture TORTURE_SECONDS='$(TORTURE_SECONDS)' TORTURE_SEED='$(TORTURE_SEED)' \
	  TORTURE_FAULTS='$(TORTURE_FAULTS)' TORTURE_POISON='$(TORTURE_POISON)' \
	  sh tests/chaos/run.sh $(BUILD)

# --- benchmark (issue 6) ------------------------------------------------------
#
#   make bench      pgwork measured beside the limits it chases (NOTIFY floor,
#                   SQL ceiling, graphile-worker as the peer) on a throwaway
#                   PostgreSQL with fsync on; prints a table per section
#                   and writes build/bench.json and build/bench.md; 45
#                   minutes on 2 heavily loaded cores, far less on quiet
#                   ones; BENCH_ONLY=step,step for a part. Always the
#                   normal -O2 build in build/ (SANITIZE is ignored); BENCH_*
#                   variables tune it (tests/bench/bench.h).
#   make soak       the retention soak alone (also part of make bench)

BENCH_SRC := $(wildcard tests/bench/*.c)

.PHONY: bench bench-build soak

bench:
	@$(MAKE) --no-print-directory SANITIZE= BUILD=build bench-build
	@sh tests/bench/bench.sh build

# make soak: the retention soak alone (tests/bench/soak.c; `make bench`
# runs it too): 2,000 tasks/s for BENCH_SOAK_SECONDS (240) with retention =
# 20s; the table's size at 1 minute and at the end. About 5 minutes.
soak:
	@$(MAKE) --no-print-directory SANITIZE= BUILD=build bench-build
	@BENCH_ONLY=soak sh tests/bench/bench.sh build

bench-build: check-deps $(BUILD)/pgwork $(BUILD)/tests/bench/bench \
             $(BUILD)/tests/bench/noop_coprocess

$(BUILD)/tests/bench/bench: $(patsubst %.c,$(BUILD)/%.o,$(BENCH_SRC)) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread

# The cheapest co-process (the coprocess handler's own cost, no interpreter).
$(BUILD)/tests/bench/noop_coprocess: tests/bench/noop/noop_coprocess.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<
