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

CFLAGS  ?= $(OPT)
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -Ilib $(shell pkg-config --cflags $(PKGS)) $(SANFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS)
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -levent_openssl -levent_pthreads -lm -lpthread

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
bin/orderpipe-$(1): $(patsubst %.c,$(BUILD)/%.c.o,$(wildcard $(2)*.c)) $(LIB) $(FLAVOUR)
	@mkdir -p bin
	$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach d,$(PROG_DIRS),$(eval $(call program_rule,$(notdir $(patsubst %/,%,$(d))),$(d))))

define helper_rule
$(BUILD)/tests/$(1): $(patsubst %.c,$(BUILD)/%.c.o,$(wildcard $(2)*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(LIB) $$(LDLIBS)
endef
$(foreach d,$(HELPER_DIRS),$(eval $(call helper_rule,$(notdir $(patsubst %/,%,$(d))),$(d))))

$(BUILD)/%.c.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

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

clean:
	rm -rf build build-san bin

-include $(shell find build build-san -name '*.d' 2>/dev/null)
