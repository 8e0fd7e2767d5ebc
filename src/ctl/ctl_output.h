/* SPDX-License-Identifier: MIT */
/* ctl_output.h - portholectl's human-readable output: ports table, event lines, error text */
#ifndef PH_CTL_OUTPUT_H
#define PH_CTL_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

/**
 * ph_ctl_print_ports() - print a GET /ports body as a table
 * @out:	destination
 * @body:	JSON body
 *
 * Columns PORT FAMILY ADDRESS EXTERNAL STATE CONNS FLOWS SINCE ERROR, sorted
 * by port and family, "-" for absent values (CONNS: forwarded TCP ports;
 * FLOWS: forwarded UDP ports); EXTERNAL is the port's "addresses",
 * comma-separated. Return: 0, or -EPROTO when @body is not the
 * expected JSON
 */
int ph_ctl_print_ports(FILE *out, const char *body);

/* Print a GET /health body as "STATE (portholed VERSION)". Return: 0 or -EPROTO */
int ph_ctl_print_health(FILE *out, const char *body);

/**
 * ph_ctl_print_event() - print one event-stream event as one line
 * @out:	destination
 * @event:	event type (snapshot, open, close, conflict, lost, or other)
 * @data:	its data (JSON for the daemon's events)
 *
 * "lost" becomes a "warning: ..." line. Return: 0 (unknown or malformed
 * events are printed raw, never fatal)
 */
int ph_ctl_print_event(FILE *out, const char *event, const char *data);

/**
 * ph_ctl_error_text() - the message of an error answer
 * @body:	response body or NULL
 * @buf, @size:	result: the "error" string of a JSON body, otherwise the
 *		body's first line; empty when there is neither. Control
 *		characters are replaced, so it is safe to print.
 */
void ph_ctl_error_text(const char *body, char *buf, size_t size);

#endif /* PH_CTL_OUTPUT_H */
