# SPDX-License-Identifier: MIT
# bench/bench.mk - build rules for the benchmark helpers (included by the top Makefile)
#
#   make bench-tools      $(O)/bench/benchtool, $(O)/bench/scan_cost, $(O)/bench/floor_relay,
#                         $(O)/bench/floor_udp
#
# benchtool, floor_relay and floor_udp are self-contained; scan_cost links libporthole.a to time the
# daemon's own scanner. bench/run also builds them itself through
# "make -f Makefile -f bench/bench.mk", hence the include guard.

ifndef PH_BENCH_MK
PH_BENCH_MK := 1

BENCH_TOOLS := $(O)/bench/benchtool $(O)/bench/scan_cost $(O)/bench/floor_relay \
	       $(O)/bench/floor_udp

.PHONY: bench-tools
bench-tools: $(BENCH_TOOLS)

$(O)/bench/benchtool: $(O)/obj/bench/benchtool.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench/floor_relay: $(O)/obj/bench/floor_relay.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(O)/bench/floor_udp: $(O)/obj/bench/floor_udp.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(O)/bench/scan_cost: $(O)/obj/bench/scan_cost.o $(O)/libporthole.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

endif
