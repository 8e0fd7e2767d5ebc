# tests/uffd/uffd.mk - convenience targets for porthole-uffd (included by the Makefile)
#   make uffd-test    end-to-end tests (tests/uffd/run) against $(O)
#   make uffd-bench   the issue-6 benchmark (bench/uffd/run), about 2 minutes
# Both only need what the main Makefile builds: porthole-uffd and helpers/uffd_fc.
.PHONY: uffd-test uffd-bench
uffd-test: $(O)/porthole-uffd $(O)/helpers/uffd_fc
	@PH_BUILD=$(O) tests/uffd/run
uffd-bench: $(O)/porthole-uffd $(O)/helpers/uffd_fc
	@PH_BUILD=$(O) bench/uffd/run
