/*
 * prisonjail: one static binary (so LD_PRELOAD never reaches it and it needs nothing from a
 * prison's root), built by `pip install`.
 *
 *   prisonjail init ...   a prison's first process, and the only way into the prison
 *                         (init.c; the files it uses are listed in jail.h)
 *   prisonctl exec ...    this binary under that name: `prisonctl exec` (ctl.c); every other
 *                         prisonctl command goes on to the Python prisonctl
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jail.h"

const char *prog = "prisonjail";

void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

void usage(const char *msg)
{
	fprintf(stderr, "%s: %s\n", prog, msg);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	if (!strcmp(base ? base + 1 : argv[0], "prisonctl")) {
		prog = "prisonctl";
		return ctl_main(argc, argv);
	}
	if (argc >= 2 && !strcmp(argv[1], "init"))
		return init_main(argc, argv);
	usage("usage: prisonjail init ... (see init.c), or run as prisonctl");
}
