/* What the suite's probes share: one attempt's outcome, as the tests read it. */
#ifndef PRISOND_TEST_PROBE_H
#define PRISOND_TEST_PROBE_H
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "ok", or "err ERRNO_NAME" (the errno a call really got) */
static inline int report(long rc)
{
	if (rc < 0) {
		printf("err %s\n", strerrorname_np(errno));
		return 1;
	}
	printf("ok\n");
	return 0;
}
#endif
