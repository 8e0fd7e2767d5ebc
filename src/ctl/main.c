// SPDX-License-Identifier: MIT
/* main.c - portholectl: command-line client of portholed's control API */
#include <signal.h>
#include <stdio.h>

#include "ctl_cmd.h"

int main(int argc, char **argv)
{
	struct ph_ctl_opts o;
	int ret;

	/* a vanished reader must not kill us mid-line; writes report EPIPE */
	signal(SIGPIPE, SIG_IGN);
	ret = ph_ctl_parse_args(&o, argc, argv, stdout, stderr);
	if (ret != PH_CTL_RUN)
		return ret;
	ret = ph_ctl_run(&o, stdout, stderr);
	if (fflush(stdout) && ret == PH_CTL_EXIT_OK)
		ret = PH_CTL_EXIT_ERROR;
	return ret;
}
