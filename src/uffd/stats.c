// SPDX-License-Identifier: MIT
/* stats.c - fault latency histogram and the --stats-json report
 *
 * Latencies go into a log-linear histogram: exact below 64 ns, then 64
 * buckets per power of two, so any quantile is within 1.6% of the truth in
 * 32 KiB of counters, however many faults a long-lived VM takes (an array of
 * samples would grow without bound with balloon REMOVE/refault cycles).
 */
#include "uffd.h"
#include "loop.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned bucket_of(uint64_t v)
{
	unsigned msb, shift;

	if (v < PH_UFFD_HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - 6u;	/* 64 = 1 << 6 sub-buckets */
	return (shift + 1u) * PH_UFFD_HIST_SUB + (unsigned)((v >> shift) & (PH_UFFD_HIST_SUB - 1));
}

/* midpoint of a bucket's value range */
static uint64_t bucket_mid(unsigned b)
{
	unsigned shift;
	uint64_t lo;

	if (b < PH_UFFD_HIST_SUB)
		return b;
	shift = b / PH_UFFD_HIST_SUB - 1u;
	lo = (uint64_t)(PH_UFFD_HIST_SUB + b % PH_UFFD_HIST_SUB) << shift;
	return lo + ((1ull << shift) >> 1);
}

/**
 * ph_uffd_hist_add() - record one sample
 * @h:		histogram
 * @v:		value (ns)
 */
void ph_uffd_hist_add(struct ph_uffd_hist *h, uint64_t v)
{
	h->b[bucket_of(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

/**
 * ph_uffd_hist_quantile() - value below which a fraction @q of samples lie
 * @h:		histogram
 * @q:		0 < q <= 1
 *
 * Return: the quantile (bucket midpoint, never above the maximum; the
 *	   maximum itself for the top rank), 0 if empty
 */
uint64_t ph_uffd_hist_quantile(const struct ph_uffd_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (!h->n)
		return 0;
	rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank >= h->n)
		return h->max;	/* the top sample is known exactly */
	for (unsigned b = 0; b < PH_UFFD_HIST_BUCKETS; b++) {
		seen += h->b[b];
		if (seen >= rank) {
			uint64_t m = bucket_mid(b);

			return m < h->max ? m : h->max;
		}
	}
	return h->max;
}

static json_t *ms_or_null(uint64_t ns)
{
	return ns ? json_real((double)ns / 1e6) : json_null();
}

#define LD(x) ((json_int_t)atomic_load_explicit(&(x), memory_order_relaxed))

/**
 * ph_uffd_stats_write() - write the stats JSON atomically (temp file + rename)
 * @s:		a stopped server (or a zeroed one when no VM ever connected)
 * @path:	output file
 * @reason:	why the server exited ("hangup", "signal", ...)
 *
 * Return: 0 or -errno
 */
int ph_uffd_stats_write(const struct ph_uffd_server *s, const char *path, const char *reason)
{
	uint64_t now = ph_now_ns();
	size_t plen = strlen(path) + 8;
	char *tmp = malloc(plen);
	json_t *lat, *root = NULL;
	int ret = -ENOMEM;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, plen, "%s.tmp", path);
	lat = json_pack("{s:f, s:f, s:f, s:I}",
			"p50", (double)ph_uffd_hist_quantile(&s->lat, 0.50) / 1e3,
			"p99", (double)ph_uffd_hist_quantile(&s->lat, 0.99) / 1e3,
			"max", (double)s->lat.max / 1e3,
			"samples", (json_int_t)s->lat.n);
	if (!lat)
		goto out;
	root = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o}",
			 "reason", reason,
			 "prefetch", ph_uffd_prefetch_name(s->prefetch),
			 "regions", (json_int_t)s->nreg,
			 "total_bytes", (json_int_t)s->total_bytes,
			 "faults", LD(s->c.faults),
			 "fault_bytes", LD(s->c.fault_bytes),
			 "fault_latency_us", lat);
	if (!root)
		goto out;
	json_object_set_new(root, "pages_prefetched", json_integer(LD(s->c.pages_prefetched)));
	json_object_set_new(root, "bytes_prefetched", json_integer(LD(s->c.bytes_prefetched)));
	json_object_set_new(root, "zero_pages", json_integer(LD(s->c.zero_pages)));
	json_object_set_new(root, "eexist", json_integer(LD(s->c.eexist)));
	json_object_set_new(root, "eagain", json_integer(LD(s->c.eagain)));
	json_object_set_new(root, "removed_ranges", json_integer(LD(s->c.removed_ranges)));
	json_object_set_new(root, "removed_bytes", json_integer(LD(s->c.removed_bytes)));
	json_object_set_new(root, "ioctls", json_integer(LD(s->c.ioctls)));
	json_object_set_new(root, "gate_waits", json_integer(LD(s->c.gate_waits)));
	json_object_set_new(root, "event_remove", json_boolean(s->gate.on));
	json_object_set_new(root, "trace_pages", json_integer((json_int_t)s->ntrace));
	json_object_set_new(root, "trace_replayed_bytes", json_integer(LD(s->c.trace_replayed)));
	json_object_set_new(root, "recorded_pages", json_integer((json_int_t)s->nrec));
	json_object_set_new(root, "populated_ms", ms_or_null(atomic_load(&s->populated_ns)));
	json_object_set_new(root, "prefetch_done_ms", ms_or_null(atomic_load(&s->prefetch_done_ns)));
	json_object_set_new(root, "uptime_ms", ms_or_null(s->t0_ns ? now - s->t0_ns : 0));
	if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) < 0) {
		ret = -EIO;
		unlink(tmp);
		goto out;
	}
	ret = rename(tmp, path) < 0 ? -errno : 0;
	if (ret)
		unlink(tmp);
out:
	json_decref(root);
	free(tmp);
	return ret;
}
