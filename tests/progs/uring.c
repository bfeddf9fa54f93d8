/*
 * uring: connect through io_uring (IORING_OP_CONNECT), which no preload sees.
 *   uring HOST PORT  ->  "ok local=..." or "err ..."
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

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
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
