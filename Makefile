# shardproxy -- GNU make.
#
#   make                 build ./shardproxy (libc only; CC=clang, CC=musl-gcc work)
#   make SANITIZE=1      the same binary under ASan/UBSan
#   make test            install missing test tools, build, unit tests, bats suites
#   make static          a static binary (musl-gcc) for FROM scratch images
#   make install         PREFIX=/usr/local DESTDIR= ; make uninstall
#   make bench           shardproxy vs twemproxy vs direct Redis (BENCH_QUICK=1: ~1 min)
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
BUILD := $(CC) $(SP_CFLAGS) $(CPPFLAGS) $(LDFLAGS) $(LDLIBS)

.PHONY: all test unit demo bench deps clean static install uninstall FORCE

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

unit: test/unit
	./test/unit

deps:
	@test/deps.sh

# The same proxy under ASan/UBSan: make test runs every bats suite a second
# time against it (helper.bash fails a test whose proxy log holds a report).
shardproxy-asan: shardproxy.c shardproxy.h .build-flags
	$(CC) $(WARN) $(CFLAGS) $(SANFLAGS) $(CPPFLAGS) $(LDFLAGS) -o $@ shardproxy.c $(LDLIBS)

# deps first: it may have to install bats and redis-server.
test: deps all unit
	bats test/
	@if [ -n "$(san_ok)" ]; then \
		$(MAKE) --no-print-directory shardproxy-asan && \
		echo "== bats again, against the ASan/UBSan build" && \
		SP_BIN=$(CURDIR)/shardproxy-asan bats test/; \
	else \
		echo "make test: $(CC) cannot build sanitizer binaries; no ASan/UBSan pass"; \
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
	rm -f shardproxy shardproxy-asan shardproxy-static test/unit test/.san-check .build-flags *.o test/*.o
	rm -rf *.dSYM test/*.dSYM
