# casemail: a plain Makefile. Each process folder builds one binary into
# bin/; common/ is a static library every binary links. Header
# dependencies are generated (-MMD).

PKGS     := libczmq libzmq gmime-3.0 libcurl libpq libmicrohttpd jansson openssl libxml-2.0 libidn2
# The flags below are read when make starts, so a target that installs
# packages first (test, demo, bench, chaos, fuzz) builds in a second make
# after `deps`; a build without them stops at `pkgs` and names them.
CC       ?= cc
OPTFLAGS ?= -O2 -g
SANFLAGS ?=
override CFLAGS := $(OPTFLAGS) $(SANFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
            -Wno-unknown-warning-option -Wno-format-truncation -Icommon \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
OBJ      ?= obj
BIN      ?= bin

COMMON_SRC  := $(wildcard common/*.c)
ROUTER_SRC  := $(wildcard router/*.c)
FETCHER_SRC := $(wildcard fetcher/*.c)
PARSER_SRC  := $(wildcard parser/*.c)
SENDER_SRC  := $(wildcard sender/*.c)
CLI_SRC     := $(wildcard cli/*.c)
# parser/message.c is the parsing library: the self-test runner links it too.
PARSERLIB_SRC := parser/message.c parser/quote.c parser/uuencode.c parser/calendar.c parser/tnef.c \
                 parser/rtf.c

objs = $(patsubst %.c,$(OBJ)/%.o,$(1))

PROGRAMS := $(BIN)/casemail $(BIN)/casemail-router $(BIN)/casemail-fetcher \
            $(BIN)/casemail-parser $(BIN)/casemail-sender $(BIN)/casemail-selftest \
            $(BIN)/casemail-message-test $(BIN)/casemail-db-test $(BIN)/casemail-mail-test

all: $(PROGRAMS)

$(OBJ)/%.o: %.c | pkgs
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(OBJ)/libcommon.a: $(call objs,$(COMMON_SRC))
	@rm -f $@
	@ar rcs $@ $^

$(BIN)/casemail: $(call objs,$(CLI_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-router: $(call objs,$(ROUTER_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-fetcher: $(call objs,$(FETCHER_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-parser: $(call objs,$(PARSER_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-sender: $(call objs,$(SENDER_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-selftest: $(call objs,tests/unit/selftest.c $(PARSERLIB_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-message-test: $(call objs,tests/unit/message_test.c $(PARSERLIB_SRC)) $(OBJ)/libcommon.a
$(BIN)/casemail-db-test: $(call objs,tests/unit/db_test.c) $(OBJ)/libcommon.a
$(BIN)/casemail-mail-test: $(call objs,tests/unit/imap_smtp_live.c) $(OBJ)/libcommon.a

$(PROGRAMS):
	@mkdir -p $(BIN)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

pkgs:
	@pkg-config --exists $(PKGS) || { pkg-config --print-errors --exists $(PKGS) 2>&1 | sed 's/^/make: /' >&2; \
	    echo "make: development packages are missing: run 'make deps' (or 'make test', which does)" >&2; exit 1; }

# Debian packages the project and its tests need; apt runs only when one
# is missing.
DEB_PKGS := build-essential pkg-config clang libclang-rt-14-dev \
            libzmq3-dev libczmq-dev libgmime-3.0-dev libcurl4-openssl-dev \
            libpq-dev libssl-dev libmicrohttpd-dev libjansson-dev libxml2-dev libidn2-dev \
            postgresql dovecot-imapd dovecot-lmtpd postfix swaks \
            libnet-ssleay-perl openssl curl iproute2 procps valgrind python3 python3-yaml \
            python3-psycopg2 docker-compose cyrus-common sasl2-bin tnef pgbouncer \
            courier-authlib courier-authdaemon courier-authlib-userdb \
            libcourier-unicode4 libgamin0 libidn12 libgdbm6
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing >/dev/null || exit 1; \
	fi
	@$(MAKE) -s cyrus-imapd
	@$(MAKE) -s courier-imap

# Cyrus IMAP's imapd and idled for tests/stack/cyrus.sh (the second IMAP
# server the tests run): Debian's cyrus-imapd conflicts with dovecot-imapd,
# so its package, of the installed cyrus-common's version, is unpacked into
# var/deb/cyrus-imapd instead of installed (again when cyrus-common changes
# version: the version it was unpacked for is in cyrus-imapd.version).
cyrus-imapd:
	@v=$$(dpkg-query -W -f='$${Version}' cyrus-common) || exit 1; \
	[ -x var/deb/cyrus-imapd/usr/lib/cyrus/bin/imapd ] \
	    && [ "$$(cat var/deb/cyrus-imapd.version 2>/dev/null)" = "$$v" ] && exit 0; \
	mkdir -p var/deb && cd var/deb && rm -rf cyrus-imapd cyrus-imapd.version cyrus-imapd_*.deb && \
	{ apt-get download "cyrus-imapd=$$v" >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get download "cyrus-imapd=$$v" >/dev/null 2>&1; }; } && \
	dpkg-deb -x cyrus-imapd_*.deb cyrus-imapd && rm -f cyrus-imapd_*.deb && \
	echo "$$v" > cyrus-imapd.version && \
	echo "unpacked cyrus-imapd $$v into var/deb/cyrus-imapd" || \
	{ echo "make deps: cannot fetch cyrus-imapd $$v from the Debian archive" >&2; exit 1; }

# Courier-IMAP's imapd (courier-imap) and couriertls (courier-base) for
# tests/stack/courier.sh, the third IMAP server the tests run. courier-imap
# conflicts with dovecot-imapd and courier-base would pull in Courier's
# authentication daemon and MTA, so both packages, of their candidate
# versions, are unpacked into var/deb instead; their libraries, the
# courier user (made by courier-authlib) and, for logins, authdaemond and
# its userdb tools come from DEB_PKGS (their daemon is not started). Unpacked again
# when the candidate changes (courier-imap.version holds both versions).
courier-imap:
	@cand () { apt-cache policy "$$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }; \
	vi=$$(cand courier-imap); vb=$$(cand courier-base); \
	case "$$vi/$$vb" in /*|*/|*"(none)"*) apt-get update -qq >/dev/null 2>&1; \
	    vi=$$(cand courier-imap); vb=$$(cand courier-base);; esac; \
	case "$$vi/$$vb" in /*|*/|*"(none)"*) \
	    echo "make deps: no candidate for courier-imap or courier-base (apt-get update?)" >&2; exit 1;; esac; \
	[ -x var/deb/courier-imap/usr/bin/imapd ] && [ -x var/deb/courier-base/usr/bin/couriertls ] \
	    && [ "$$(cat var/deb/courier-imap.version 2>/dev/null)" = "$$vi $$vb" ] && exit 0; \
	mkdir -p var/deb && cd var/deb && \
	rm -rf courier-imap courier-base courier-imap.version courier-imap_*.deb courier-base_*.deb && \
	{ apt-get download "courier-imap=$$vi" "courier-base=$$vb" >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get download "courier-imap=$$vi" "courier-base=$$vb" >/dev/null 2>&1; }; } && \
	dpkg-deb -x courier-imap_*.deb courier-imap && dpkg-deb -x courier-base_*.deb courier-base && \
	rm -f courier-imap_*.deb courier-base_*.deb && \
	echo "$$vi $$vb" > courier-imap.version && \
	echo "unpacked courier-imap $$vi and courier-base $$vb into var/deb" || \
	{ echo "make deps: cannot fetch courier-imap $$vi / courier-base $$vb from the Debian archive" >&2; exit 1; }

# AddressSanitizer + UndefinedBehaviorSanitizer build, in its own folders.
asan:
	$(MAKE) OBJ=obj-asan BIN=bin-asan CC=clang OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined"

test: deps
	@$(MAKE) --no-print-directory all bin/fuzz-message asan
	tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	tests/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	tests/bench/run.sh

# The chaos test alone, bigger than in make test: N messages, M emails.
CHAOS_N ?= 10000
CHAOS_M ?= 1000
chaos: deps
	@$(MAKE) --no-print-directory all
	CHAOS_N=$(CHAOS_N) CHAOS_M=$(CHAOS_M) CM_FUZZ_SECONDS=0 CM_SANITIZE=0 tests/run.sh chaos

# libFuzzer on the raw-message-to-record path (clang). FUZZ_SECONDS bounds
# the run; new crashes land in tests/fuzz/crashes/ and are kept as
# regression inputs in tests/fuzz/regressions/.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
              -Icommon $(shell pkg-config --cflags gmime-3.0 openssl 2>/dev/null)
bin/fuzz-message: tests/fuzz/fuzz_message.c $(PARSERLIB_SRC) common/buf.c | pkgs
	@mkdir -p bin
	@echo "  FUZZ    $@"
	@clang $(FUZZ_FLAGS) -o $@ $^ $(shell pkg-config --libs gmime-3.0 openssl) -lpthread
fuzz: deps
	@$(MAKE) --no-print-directory bin/fuzz-message
	tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf obj obj-asan bin bin-asan

.PHONY: all pkgs deps cyrus-imapd courier-imap asan test demo bench chaos fuzz clean
-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
