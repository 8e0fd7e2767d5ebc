# fuzz/fuzz.mk - libFuzzer harnesses, one per parser: fuzz/fuzz_<name>.c
# Built with clang; each harness is linked against every project library
# (sources compiled again with -fsanitize=fuzzer-no-link,address,undefined).
O       ?= build/fuzz
CC      := clang
LLHTTP_DIR     ?= /usr/share/llhttp
LLHTTP_INCLUDE ?= /usr/share/include/llhttp
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
CFLAGS  := -O1 -g -std=gnu17 -Wall -Wextra -Werror -Wno-unused-command-line-argument \
           -fno-omit-frame-pointer $(SAN) -fsanitize=fuzzer-no-link -pthread
CPPFLAGS := -D_GNU_SOURCE -DPH_VERSION=\"fuzz\" -DPH_FUZZING -Isrc/lib -Isrc/daemon -Isrc/uffd \
            -Isrc/ctl -I$(LLHTTP_INCLUDE)

SRC := $(wildcard src/lib/*.c) $(filter-out %/main.c,$(wildcard src/daemon/*.c src/uffd/*.c))
OBJ := $(patsubst %.c,$(O)/obj/%.o,$(SRC)) \
       $(O)/obj/llhttp/api.o $(O)/obj/llhttp/http.o $(O)/obj/llhttp/llhttp.o
HARNESS := $(patsubst fuzz/%.c,$(O)/%,$(wildcard fuzz/fuzz_*.c))

all: $(HARNESS)

# -MMD: an object is rebuilt when a header it includes changes (a stale
# object built against an older struct layout misreads every field after it)
$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<
$(O)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -I$(LLHTTP_INCLUDE) -O1 -g -w -DLLHTTP_STRICT_MODE=1 $(SAN) -fsanitize=fuzzer-no-link -c -o $@ $<
$(O)/libfuzzall.a: $(OBJ)
	rm -f $@
	ar rcs $@ $^
$(O)/fuzz_%: fuzz/fuzz_%.c $(O)/libfuzzall.a
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -fsanitize=fuzzer -o $@ $< $(O)/libfuzzall.a -ljansson

-include $(OBJ:.o=.d) $(HARNESS:=.d)
