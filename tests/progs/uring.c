/*
 * uring: connect through io_uring (IORING_OP_CONNECT), which no preload sees; or make a
 * socket through it (IORING_OP_SOCKET), which no seccomp filter on socket() sees.
 *   uring HOST PORT                        ->  "ok local=..." or "err ..."
 *   uring socket FAMILY TYPE PROTOCOL      ->  "ok socket" or "err ..."
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int make_socket(struct io_uring *ring, int family, int type, int protocol)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	io_uring_prep_socket(sqe, family, type, protocol, 0);
	io_uring_submit(ring);
	struct io_uring_cqe *cqe;
	io_uring_wait_cqe(ring, &cqe);
	if (cqe->res < 0) {
		printf("err errno=%d %s socket\n", -cqe->res, strerrorname_np(-cqe->res));
		return 1;
	}
	printf("ok socket\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	if (!strcmp(argv[1], "socket") && argc == 5) {
		struct io_uring ring;
		int e = io_uring_queue_init(4, &ring, 0);
		if (e < 0) {
			printf("err errno=%d %s io_uring_queue_init\n", -e, strerrorname_np(-e));
			return 1;
		}
		return make_socket(&ring, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	}
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &to.sin_addr);
	struct io_uring ring;
	int e = io_uring_queue_init(4, &ring, 0);
	if (e < 0) {
		printf("err errno=%d io_uring_queue_init\n", -e);
		return 1;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&to, sizeof to);
	io_uring_submit(&ring);
	struct io_uring_cqe *cqe;
	io_uring_wait_cqe(&ring, &cqe);
	if (cqe->res < 0) {
		printf("err errno=%d %s connect\n", -cqe->res, strerrorname_np(-cqe->res));
		return 1;
	}
	struct sockaddr_in l;
	socklen_t ll = sizeof l;
	getsockname(fd, (struct sockaddr *)&l, &ll);
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &l.sin_addr, a, sizeof a);
	printf("ok local=%s:%d\n", a, ntohs(l.sin_port));
	return 0;
}
