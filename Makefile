# orderpipe build. Programs are found by directory, so adding one needs no edit here:
#   producers/NAME/*.c, workers/NAME/*.c, tools/NAME/*.c  ->  bin/orderpipe-NAME
#   lib/*.c                                               ->  build/liborderpipe.a
#   tests/unit/test_NAME.c                                ->  build/tests/test_NAME (cmocka)
#   tests/helpers/NAME/*.c                                ->  build/tests/NAME (test-only programs)
# make SANITIZE=1 builds everything with ASan+UBSan into build-san/ and bin/.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS    := librabbitmq libpq jansson libevent openssl libcurl

ifeq ($(SANITIZE),1)
BUILD   := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1 -g
else
BUILD   := build
SANFLAGS :=
OPT     := -O2 -g
endif

# Shared by the normal, sanitizer and fuzz builds.
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wvla -Wno-unused-parameter
INCLUDES := -Ilib $(shell pkg-config --cflags $(PKGS))
LIBS     := $(shell pkg-config --libs $(PKGS)) -levent_openssl -levent_pthreads -lm -lpthread

CFLAGS  ?= $(OPT)
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARNINGS) $(INCLUDES) $(SANFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS)
LDLIBS  += $(LIBS)

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/liborderpipe.a

PROG_DIRS := $(wildcard producers/*/ workers/*/ tools/*/)
PROGRAMS  := $(foreach d,$(PROG_DIRS),bin/orderpipe-$(notdir $(patsubst %/,%,$(d))))

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
SYS_SRC    := $(wildcard tests/system/test_*.c)
SYS_TESTS  := $(SYS_SRC:tests/system/test_%.c=$(BUILD)/tests/systest_%)
HELPER_DIRS := $(wildcard tests/helpers/*/)
HELPERS    := $(foreach d,$(HELPER_DIRS),$(BUILD)/tests/$(notdir $(patsubst %/,%,$(d))))

.PHONY: all clean install test unit demo deps stack help
all: $(PROGRAMS) $(UNIT_TESTS) $(SYS_TESTS) $(HELPERS)

help:
	@echo "make [SANITIZE=1]   build bin/ and the tests";
	@echo "make test           install deps, start the dev stack, run every test";
	@echo "make demo           install deps, start the stack and pipeline, run sample orders";
	@echo "make install PREFIX=... DESTDIR=...";

# Every object, of lib/ and of the programs: SRC.c -> $(BUILD)/SRC.o
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Built afresh so a module that was renamed or removed leaves no stale object behind.
$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

# One rule per program directory.
# bin/ holds one flavour at a time: switching SANITIZE relinks every program.
FLAVOUR := bin/.flavour-$(BUILD)
$(FLAVOUR):
	@mkdir -p bin && rm -f bin/.flavour-* && touch $@

define program_rule
bin/orderpipe-$(1): $(patsubst %.c,$(BUILD)/%.o,$(wildcard $(2)*.c)) $(LIB) $(FLAVOUR)
	@mkdir -p bin
	$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach d,$(PROG_DIRS),$(eval $(call program_rule,$(notdir $(patsubst %/,%,$(d))),$(d))))

define helper_rule
$(BUILD)/tests/$(1): $(patsubst %.c,$(BUILD)/%.o,$(wildcard $(2)*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach d,$(HELPER_DIRS),$(eval $(call helper_rule,$(notdir $(patsubst %/,%,$(d))),$(d))))

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(shell pkg-config --libs cmocka) $(LDLIBS)

$(BUILD)/tests/systest_%: tests/system/test_%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

deps:
	@scripts/install-deps

stack: deps
	@scripts/dev-stack up

test: deps
	@$(MAKE) --no-print-directory all
	@scripts/dev-stack up
	@tests/run $(if $(SANITIZE),--sanitize)

unit: all
	@tests/run --unit-only

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/dev-stack up
	@scripts/demo

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/orderpipe/schemas $(DESTDIR)$(PREFIX)/share/orderpipe/sql
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 schemas/*.json $(DESTDIR)$(PREFIX)/share/orderpipe/schemas/
	install -m 0644 sql/*.sql $(DESTDIR)$(PREFIX)/share/orderpipe/sql/
	for d in functions views triggers; do install -d $(DESTDIR)$(PREFIX)/share/orderpipe/sql/$$d && \
	  install -m 0644 sql/$$d/*.sql $(DESTDIR)$(PREFIX)/share/orderpipe/sql/$$d/; done

clean:
	rm -rf build build-san $(FUZZ_BUILD) bin

# The dependency files of the flavour being built only: the other flavour's name objects that
# this build does not make.
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ==== Hardening: libFuzzer targets and valgrind (tests/fuzz/README.md) ========================
#   make fuzz-build                  tests/fuzz/fuzz_NAME.c -> build-fuzz/fuzz_NAME (clang, ASan+UBSan)
#   make fuzz [FUZZ_SECONDS=60]      runs each target FUZZ_SECONDS; fails on a crash, leak or timeout
#   make valgrind                    runs every unit test (build/tests/test_*) under valgrind; fails on any error
# Seeds are read from tests/fuzz/corpus/NAME/ (never written); new inputs go to
# build-fuzz/corpus-NAME/, crashes to build-fuzz/artifacts-NAME/, logs to build-fuzz/fuzz_NAME.log.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
FUZZ_BUILD   := build-fuzz
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE $(WARNINGS) $(INCLUDES) \
                -DFUZZ_SCHEMA_DIR='"$(CURDIR)/schemas"'
# Every target links the whole of lib/, as the programs do.
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
LIB_HDR      := $(wildcard lib/*.h)

.PHONY: fuzz-build fuzz valgrind
fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/lib/%.o: lib/%.c $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ) $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIB_OBJ) $(LIBS)

fuzz: fuzz-build
	@for n in $(FUZZ_NAMES); do \
	  out=$(FUZZ_BUILD); \
	  mkdir -p $$out/corpus-$$n $$out/artifacts-$$n; \
	  echo "fuzz_$$n: $(FUZZ_SECONDS)s (log $$out/fuzz_$$n.log)"; \
	  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $$out/fuzz_$$n \
	       -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	       -artifact_prefix=$$out/artifacts-$$n/ $(FUZZ_FLAGS) \
	       $$out/corpus-$$n tests/fuzz/corpus/$$n > $$out/fuzz_$$n.log 2>&1; then \
	    tail -60 $$out/fuzz_$$n.log; echo "fuzz_$$n: FAILED (see $$out/artifacts-$$n/)"; exit 1; \
	  fi; \
	  grep -E '^(#[0-9]+.*DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' \
	    $$out/fuzz_$$n.log | sed "s/^/  fuzz_$$n: /"; \
	done

# The unit tests of the flavour being built; valgrind cannot run beside ASan, so not SANITIZE=1.
valgrind: $(UNIT_TESTS)
	@if [ "$(SANITIZE)" = 1 ]; then echo "make valgrind runs the plain build: drop SANITIZE=1"; exit 2; fi
	@fail=0; for t in $(UNIT_TESTS); do \
	  if CMOCKA_MESSAGE_OUTPUT=stdout valgrind -q --error-exitcode=1 --leak-check=full \
	       --errors-for-leak-kinds=definite $$t > $$t.valgrind.log 2>&1; then \
	    echo "valgrind ok   $$t"; \
	  else \
	    echo "valgrind FAIL $$t"; tail -40 $$t.valgrind.log; fail=1; \
	  fi; \
	done; exit $$fail
# ==== end of Hardening =======================================================================
