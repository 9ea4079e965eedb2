# shardproxy -- GNU make.
#
#   make                 build ./shardproxy (libc only; CC=clang, CC=musl-gcc work)
#   make SANITIZE=1      the same binary under ASan/UBSan
#   make EVENTS=poll     force an event backend (epoll, kqueue, poll); default:
#                        the platform's own (epoll on Linux, kqueue on BSD/macOS)
#   make test            install missing test tools, build, unit tests, bats suites
#   make static          a static binary (musl-gcc) for FROM scratch images
#   make install         PREFIX=/usr/local DESTDIR= ; make uninstall
#   make bench           shardproxy vs twemproxy vs direct Redis (BENCH_QUICK=1: ~1 min)
#   make fuzz            each libFuzzer harness for FUZZ_SECONDS (60); fails on a crash
#   make fuzz-replay     the fuzz regression inputs and seeds, once each (part of make test)
#   make unit | demo | clean

CC     ?= cc
CFLAGS ?= -O2 -g
# Kept even when CFLAGS is overridden on the command line.
WARN   := -std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ifeq ($(SANITIZE),1)
SP_CFLAGS = $(WARN) $(CFLAGS) $(SANFLAGS)
else
SP_CFLAGS = $(WARN) $(CFLAGS)
endif
ifneq ($(EVENTS),)
SP_CFLAGS += -DEVENTS_$(shell echo $(EVENTS) | tr a-z A-Z)
endif
BUILD := $(CC) $(SP_CFLAGS) $(CPPFLAGS) $(LDFLAGS) $(LDLIBS)

.PHONY: all test unit demo bench deps clean static install uninstall FORCE \
	fuzz fuzz-ci fuzz-replay fuzz-build

PREFIX ?= /usr/local
BINDIR  = $(DESTDIR)$(PREFIX)/bin
DOCDIR  = $(DESTDIR)$(PREFIX)/share/doc/shardproxy

all: shardproxy

shardproxy: shardproxy.c shardproxy.h .build-flags
	$(CC) $(SP_CFLAGS) $(CPPFLAGS) $(LDFLAGS) -o $@ shardproxy.c $(LDLIBS)

# The compiler and flags are part of what a binary depends on: .build-flags
# holds the last command line and is rewritten only when it changes, so
# switching SANITIZE, CC or CFLAGS rebuilds and nothing else does.
.build-flags: FORCE
	@echo '$(BUILD)' | cmp -s - $@ || echo '$(BUILD)' > $@

# Unit tests include shardproxy.c itself.  They run under ASan/UBSan whenever
# $(CC) can build and run such a program (musl-gcc cannot); evaluated lazily.
san_ok = $(shell printf 'int main(void){return 0;}\n' | \
	$(CC) $(SANFLAGS) -x c - -o test/.san-check >/dev/null 2>&1 && \
	./test/.san-check >/dev/null 2>&1 && echo yes; rm -f test/.san-check)

test/unit: test/unit.c shardproxy.c shardproxy.h .build-flags
	$(CC) $(WARN) $(CFLAGS) $(if $(san_ok),$(SANFLAGS)) $(CPPFLAGS) $(LDFLAGS) \
		-o $@ test/unit.c $(LDLIBS)

# The same tests on the portable poll() backend (the event-backend tests differ).
test/unit-poll: test/unit.c shardproxy.c shardproxy.h .build-flags
	$(CC) $(WARN) $(CFLAGS) $(if $(san_ok),$(SANFLAGS)) -DEVENTS_POLL $(CPPFLAGS) $(LDFLAGS) \
		-o $@ test/unit.c $(LDLIBS)

unit: test/unit test/unit-poll
	./test/unit
	./test/unit-poll

deps:
	@test/deps.sh

# The same proxy under ASan/UBSan, built the portable way: the poll()
# backend unless EVENTS says otherwise, and workers sharing one listening
# socket instead of SO_REUSEPORT.  make test runs every bats suite a second
# time against it (helper.bash fails a test whose proxy log holds a
# report), so the whole suite runs on both the platform's choices and the
# portable ones.  Without the spare-buffer list (BUF_SPARE=0), so that every
# buffer freed is seen freed by ASan.
ASAN_EVENTS := -DEVENTS_$(shell echo $(or $(EVENTS),poll) | tr a-z A-Z) -DNET_NO_REUSEPORT \
	-DBUF_SPARE=0
shardproxy-asan: shardproxy.c shardproxy.h .build-flags
	$(CC) $(WARN) $(CFLAGS) $(SANFLAGS) $(ASAN_EVENTS) $(CPPFLAGS) $(LDFLAGS) -o $@ \
		shardproxy.c $(LDLIBS)

# Suites run once more with `workers 2` (helper.bash adds the directive):
# routing and splitting, failures, reload and operations, the command line.
WORKERS_SUITES := test/proxy.bats test/failures.bats test/ops.bats test/cli.bats

# deps first: it may have to install bats and redis-server.
test: deps all unit fuzz-replay
	bats test/
	@echo "== bats again with workers 2: $(WORKERS_SUITES)"
	SP_WORKERS=2 bats $(WORKERS_SUITES)
	@if [ -n "$(san_ok)" ]; then \
		$(MAKE) --no-print-directory shardproxy-asan && \
		echo "== bats again, against the ASan/UBSan build ($$(./shardproxy-asan -V))" && \
		SP_BIN=$(CURDIR)/shardproxy-asan bats test/; \
	else \
		echo "make test: $(CC) cannot build sanitizer binaries; no ASan/UBSan pass"; \
	fi
	@if command -v valgrind >/dev/null 2>&1; then \
		echo "== valgrind memcheck over a representative subset" && test/valgrind.sh; \
	else \
		echo "make test: valgrind not installed; no memcheck pass"; \
	fi

demo: all
	test/demo.sh

bench: all
	test/bench.sh

# A static binary with musl (Debian: musl-tools), for FROM scratch images.
static: shardproxy-static
	@echo "shardproxy-static: $$(wc -c < shardproxy-static) bytes, statically linked"
shardproxy-static: shardproxy.c shardproxy.h
	@command -v musl-gcc >/dev/null 2>&1 || test/deps.sh musl-gcc
	musl-gcc -static $(WARN) -O2 -s -o $@ shardproxy.c

install: shardproxy
	install -d $(BINDIR) $(DOCDIR)
	install -m 755 shardproxy $(BINDIR)/shardproxy
	install -m 644 shardproxy.conf README.md $(DOCDIR)/

uninstall:
	rm -f $(BINDIR)/shardproxy $(DOCDIR)/shardproxy.conf $(DOCDIR)/README.md
	-rmdir $(DOCDIR)

clean:
	rm -f shardproxy shardproxy-asan shardproxy-static test/unit test/unit-poll test/.san-check .build-flags *.o test/*.o
	rm -f $(FUZZ_BINS) test/fuzz/.fuzz-check
	rm -rf $(FUZZ_WORK)
	rm -rf *.dSYM test/*.dSYM

# ---------------------------------------------------------------- fuzzing
# libFuzzer harnesses in test/fuzz/ (clang; Debian: clang, libclang-rt-14-dev).
# Each includes shardproxy.c with main renamed.  Seeds live in
# test/fuzz/corpus/NAME/ and inputs that once found a bug in
# test/fuzz/regressions/NAME/ (both committed, both replayed by make test);
# the corpus a run grows stays in test/fuzz/work/ (not committed).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer \
	-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
FUZZ_NAMES   := request reply config admin split
FUZZ_BINS    := $(FUZZ_NAMES:%=test/fuzz/fuzz_%)
FUZZ_WORK    := test/fuzz/work
# Per-harness libFuzzer options.  config: 4 KiB inputs keep a Maglev build at
# table_size 5000011 with a few hundred backends to seconds, not minutes.
# admin: stderr closed, or every fuzzed `reload` logs a line.
FUZZ_OPTS_request := -dict=test/fuzz/resp.dict
FUZZ_OPTS_reply   := -dict=test/fuzz/resp.dict
FUZZ_OPTS_split   := -dict=test/fuzz/resp.dict
FUZZ_OPTS_config  := -dict=test/fuzz/config.dict -max_len=4096 -timeout=120
FUZZ_OPTS_admin   := -dict=test/fuzz/admin.dict -max_len=8192 -close_fd_mask=2

# "yes" when $(FUZZ_CC) can build and run a libFuzzer program (evaluated lazily).
fuzz_ok = $(shell printf '%s\n' \
	'int LLVMFuzzerTestOneInput(const unsigned char *d, __SIZE_TYPE__ n);' \
	'int LLVMFuzzerTestOneInput(const unsigned char *d, __SIZE_TYPE__ n) { (void)d; (void)n; return 0; }' | \
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -x c - -o test/fuzz/.fuzz-check >/dev/null 2>&1 && \
	./test/fuzz/.fuzz-check -runs=1 >/dev/null 2>&1 && echo yes; rm -f test/fuzz/.fuzz-check)

$(FUZZ_BINS): test/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h shardproxy.c shardproxy.h
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $<

fuzz-build: $(FUZZ_BINS)

# Run every harness for FUZZ_SECONDS, all of them even if one crashes; fail
# if any did (test/fuzz/run.sh prints the crash file and the report).
fuzz:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 && [ -n "$(fuzz_ok)" ] || test/deps.sh clang
	@$(MAKE) --no-print-directory fuzz-build
	@status=0; \
	$(foreach h,$(FUZZ_NAMES),test/fuzz/run.sh $(h) $(FUZZ_SECONDS) $(FUZZ_OPTS_$(h)) || status=1;) \
	exit $$status

# What .ci/run calls after make test.
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

# Every regression input and seed, run once through its harness (libFuzzer
# runs files named on its command line once each).  Skipped with a message
# when there is no clang with the fuzzer runtime, as the ASan pass is.
fuzz-replay:
	@if [ -z "$(fuzz_ok)" ]; then \
		echo "make test: $(FUZZ_CC) cannot build libFuzzer programs (Debian: clang, libclang-rt-14-dev); fuzz regressions not replayed"; \
	else \
		$(MAKE) --no-print-directory fuzz-build && mkdir -p $(FUZZ_WORK) && \
		for h in $(FUZZ_NAMES); do \
			files=$$(find test/fuzz/regressions/$$h test/fuzz/corpus/$$h -type f 2>/dev/null | sort); \
			[ -n "$$files" ] || continue; \
			log=$(FUZZ_WORK)/replay-$$h.log; \
			if test/fuzz/fuzz_$$h $$files >$$log 2>&1; then \
				echo "fuzz_$$h: $$(echo "$$files" | grep -c regressions/) regression(s), $$(echo "$$files" | grep -c corpus/) seed(s) replayed, OK"; \
			else \
				tail -n 60 $$log; echo "fuzz_$$h: FAILED replaying its regressions/seeds (log: $$log)"; exit 1; \
			fi; \
		done; \
	fi
