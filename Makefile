# pgwork — build, run, test.
#
#   make            build build/pgwork
#   make run        demo: throwaway PostgreSQL (unless PGWORK_DATABASE_URL is
#                   set), migrate, supervisor on deploy/pgwork.example.conf
#   make test       unit + integration tests against a real PostgreSQL 15
#   make test SANITIZE=1   the same, built with ASan + UBSan (build/sanitize)
#   make lint       cppcheck and clang-format check
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
LDLIBS = -lpq -lconfuse -lmicrohttpd -lm
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -pthread)

SHARED_SRC := $(wildcard shared/*.c)
WORKER_SRC := $(wildcard worker/*.c)
SUPERVISOR_SRC := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c))
MIGRATIONS := $(sort $(wildcard migrations/*.sql))

LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(SHARED_SRC) $(WORKER_SRC) $(SUPERVISOR_SRC)) \
           $(BUILD)/gen/migrations.o
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

$(UNIT_BIN): $(patsubst %.c,$(BUILD)/%.o,$(UNIT_SRC)) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

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
	  --inline-suppr --std=c11 -D_GNU_SOURCE -I. shared supervisor worker
	clang-format --dry-run --Werror $(shell git ls-files '*.c' '*.h')

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
