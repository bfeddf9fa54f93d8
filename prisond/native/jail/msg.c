/* The records a prison's init and the daemon exchange over a SOCK_SEQPACKET unix socket.
 *
 * One message is one packet: "op=NAME\0" followed by "key=value\0" records, in order, keys
 * repeated where a list is meant (arg=, env=).  Values are bytes without NUL, which argv and
 * environment strings cannot hold anyway.  Descriptors travel with the message (SCM_RIGHTS).
 * The Python side is prisond/host/initlink.py; tests/test_initlink.py checks its encoding, the integration suites both ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "jail.h"

void msg_init(struct msg *m, const char *op)
{
	m->len = 0;
	m->nfds = 0;
	msg_add(m, "op", op);
}

int msg_add(struct msg *m, const char *key, const char *value)
{
	size_t k = strlen(key), v = strlen(value);
	if (m->len + k + v + 2 > sizeof m->buf)
		return -1;
	memcpy(m->buf + m->len, key, k);
	m->buf[m->len + k] = '=';
	memcpy(m->buf + m->len + k + 1, value, v + 1);
	m->len += k + v + 2;
	return 0;
}

int msg_addf(struct msg *m, const char *key, const char *fmt, ...)
{
	char value[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof value)
		return -1;
	return msg_add(m, key, value);
}

int msg_fd(struct msg *m, int fd)
{
	if (m->nfds >= MSG_FDS)
		return -1;
	m->fds[m->nfds++] = fd;
	return 0;
}

int msg_send(int sock, const struct msg *m, int flags)
{
	struct iovec iov = {.iov_base = (void *)m->buf, .iov_len = m->len};
	union {
		char buf[CMSG_SPACE(sizeof(int) * MSG_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1};
	if (m->nfds) {
		h.msg_control = ctl.buf;
		h.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&h);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
		memcpy(CMSG_DATA(c), m->fds, sizeof(int) * m->nfds);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &h, MSG_NOSIGNAL | flags);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)m->len ? 0 : -1;
}

int msg_recv(int sock, struct msg *m)
{
	struct iovec iov = {.iov_base = m->buf, .iov_len = sizeof m->buf - 1};
	union {
		char buf[CMSG_SPACE(sizeof(int) * MSG_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			   .msg_controllen = sizeof ctl.buf};
	ssize_t n;
	do
		n = recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	m->nfds = 0;
	if (n <= 0)
		return (int)n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *fds = (int *)CMSG_DATA(c);
		for (int i = 0; i < count; i++)
			if (m->nfds < MSG_FDS)
				m->fds[m->nfds++] = fds[i];
			else
				close(fds[i]);
	}
	if (h.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) { /* never half a request */
		for (int i = 0; i < m->nfds; i++)
			close(m->fds[i]);
		m->nfds = 0;
		errno = EMSGSIZE;
		return -1;
	}
	m->len = (size_t)n;
	m->buf[n] = 0;
	return 1;
}

int msg_next(const struct msg *m, size_t *pos, const char **key, size_t *klen, const char **value)
{
	while (*pos < m->len) {
		const char *rec = m->buf + *pos;
		size_t len = strnlen(rec, m->len - *pos);
		*pos += len + 1;
		const char *eq = memchr(rec, '=', len);
		if (!eq)
			continue; /* not a record: skipped, as an unknown key would be */
		*key = rec;
		*klen = (size_t)(eq - rec);
		*value = eq + 1;
		return 1;
	}
	return 0;
}

const char *msg_get(const struct msg *m, const char *key)
{
	size_t pos = 0, klen, want = strlen(key);
	const char *k, *v;
	while (msg_next(m, &pos, &k, &klen, &v))
		if (klen == want && !memcmp(k, key, klen))
			return v;
	return NULL;
}
