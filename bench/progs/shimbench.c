/*
 * shimbench: time one socket operation in a loop; prints "ns_per_op=<float>".
 *   shimbench connect ADDR N   socket()+connect()+close() to an in-process listener on ADDR
 *                              (accepted and closed in the same thread: socket_wrapper 1.3.5
 *                              crashes now and then with an accepting thread beside it)
 *   shimbench bind ADDR N      socket()+bind(ADDR:0)+close()
 *   shimbench udp ADDR N       sendto() of 32 bytes to an in-process sink on ADDR
 *   shimbench hostname N       gethostname()
 * The same binary runs without a shim, with prisond's shim, and with socket_wrapper.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static struct sockaddr_in addr_of(const char *a, int port)
{
	struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, a, &s.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", a);
		exit(2);
	}
	return s;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[1];
	long n = atol(argv[argc - 1]);
	double t0, t1;
	if (!strcmp(mode, "hostname")) {
		char buf[256];
		t0 = now();
		for (long i = 0; i < n; i++)
			gethostname(buf, sizeof buf);
		t1 = now();
	} else if (!strcmp(mode, "bind")) {
		struct sockaddr_in a = addr_of(argv[2], 0);
		t0 = now();
		for (long i = 0; i < n; i++) {
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
				perror("bind");
				return 1;
			}
			close(fd);
		}
		t1 = now();
	} else if (!strcmp(mode, "connect")) {
		struct sockaddr_in a = addr_of(argv[2], 0);
		int l = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0) {
			perror("listen");
			return 1;
		}
		socklen_t al = sizeof a;
		getsockname(l, (struct sockaddr *)&a, &al);
		t0 = now();
		for (long i = 0; i < n; i++) {
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			/* RST on close: no TIME_WAIT pile-up to slow the later iterations */
			struct linger lg = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
			if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
				perror("connect");
				return 1;
			}
			int c = accept(l, NULL, NULL);
			close(fd);
			if (c >= 0)
				close(c);
		}
		t1 = now();
	} else if (!strcmp(mode, "udp")) {
		struct sockaddr_in a = addr_of(argv[2], 0);
		int sink = socket(AF_INET, SOCK_DGRAM, 0);
		if (bind(sink, (struct sockaddr *)&a, sizeof a) < 0) {
			perror("bind sink");
			return 1;
		}
		socklen_t al = sizeof a;
		getsockname(sink, (struct sockaddr *)&a, &al);
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		char msg[32] = "prisond-bench";
		t0 = now();
		for (long i = 0; i < n; i++) {
			if (sendto(fd, msg, sizeof msg, 0, (struct sockaddr *)&a, sizeof a) < 0) {
				perror("sendto");
				return 1;
			}
			if ((i & 7) == 7) { /* drain: socket_wrapper carries UDP over unix datagrams, 10 queued at most */
				char b[64];
				while (recv(sink, b, sizeof b, MSG_DONTWAIT) > 0)
					;
			}
		}
		t1 = now();
	} else {
		return 2;
	}
	printf("ns_per_op=%.1f\n", (t1 - t0) / n);
	return 0;
}
