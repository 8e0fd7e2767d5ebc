/* SPDX-License-Identifier: MIT */
/* supervise.h - portholed --supervise: restart the daemon when it dies, holding its listeners */
#ifndef PH_SUPERVISE_H
#define PH_SUPERVISE_H

#include "config.h"

/**
 * ph_supervise() - run the supervisor until SIGTERM/SIGINT
 * @cfg:	the parsed command line (validated: a child never fails on it)
 * @argc, @argv: the command line; the child gets it without --supervise
 *
 * Return: the exit status of the process: the child's when it exited by
 * itself after the stop (0 for a clean stop), 1 when it did not exit
 * cleanly or the supervisor could not start, 2 when the child rejected its
 * command line
 */
int ph_supervise(const struct ph_daemon_config *cfg, int argc, char **argv);

#endif /* PH_SUPERVISE_H */
