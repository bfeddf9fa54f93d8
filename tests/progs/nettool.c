/*
 * nettool: one socket operation per invocation, for the prisond test suite.
 * Prints one line per result: "ok local=ADDR peer=ADDR" or "err errno=N NAME".
 * Compiled by the tests (dynamically, statically, with _FORTIFY_SOURCE=2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <linux/close_range.h>
#include <sys/pidfd.h>
#include <signal.h>
#include <sched.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <time.h>
#include <netinet/ip_icmp.h>
#include <netinet/icmp6.h>
#include <unistd.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

static int parse(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len, int family_hint)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (family_hint != AF_INET6 && inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*len = sizeof *in;
		return AF_INET;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof *in6;
		return AF_INET6;
	}
	fprintf(stderr, "bad address %s\n", host);
	exit(2);
}

static const char *fmt(const struct sockaddr_storage *ss, char *buf, size_t n)
{
	char a[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
		snprintf(buf, n, "%s:%d", a, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
		snprintf(buf, n, "[%s]:%d", a, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, n, "family%d", ss->ss_family);
	}
	return buf;
}

static int fail(const char *what)
{
	int e = errno;
	printf("err errno=%d %s %s\n", e, strerrorname_np(e) ? strerrorname_np(e) : "?", what);
	fflush(stdout);
	return 1;
}

static void report(int fd, int with_peer)
{
	struct sockaddr_storage l, p;
	socklen_t ll = sizeof l, pl = sizeof p;
	char a[80], b[80];
	memset(&l, 0, sizeof l);
	memset(&p, 0, sizeof p);
	getsockname(fd, (struct sockaddr *)&l, &ll);
	if (with_peer && getpeername(fd, (struct sockaddr *)&p, &pl) == 0)
		printf("ok local=%s peer=%s\n", fmt(&l, a, sizeof a), fmt(&p, b, sizeof b));
	else
		printf("ok local=%s\n", fmt(&l, a, sizeof a));
	fflush(stdout);
}

static int do_bind(const char *host, int port, int listen_too, int v6only, int reuseport)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, 0);
	int fd = socket(fam, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (fam == AF_INET6 && v6only >= 0)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return fail("bind");
	if (listen_too) {
		if (listen(fd, 16) < 0)
			return fail("listen");
		report(fd, 0);
		/* serve: accept and answer "hello from <local>" until stdin closes */
		for (;;) {
			int c = accept(fd, NULL, NULL);
			if (c < 0)
				break;
			report(c, 1);
			const char msg[] = "hello\n";
			ssize_t w = write(c, msg, sizeof msg - 1);
			(void)w;
			close(c);
		}
		return 0;
	}
	report(fd, 0);
	return 0;
}

/* Linux takes AF_UNSPEC + INADDR_ANY on an AF_INET socket as a wildcard bind */
static int do_bind_unspec(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_UNSPEC;
	if (fd < 0)
		return fail("socket");
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		return fail("bind");
	report(fd, 0);
	return 0;
}

static int do_listen_unbound(int fam, int port_hint)
{
	int fd = socket(fam, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket");
	if (listen(fd, 16) < 0)
		return fail("listen");
	report(fd, 0);
	if (port_hint) { /* hold the listener until stdin closes */
		char b[1];
		ssize_t r = read(0, b, 1);
		(void)r;
	}
	return 0;
}

static int connect_one(const char *host, int port, int family_hint)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, family_hint);
	int fd = socket(fam, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket");
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		return fail("connect");
	report(fd, 1);
	close(fd);
	return 0;
}

/* bind first (to the given local address), then connect */
static int do_bound_connect(const char *local, const char *host, int port)
{
	struct sockaddr_storage l, d;
	socklen_t ll, dl;
	int fam = parse(local, 0, &l, &ll, 0);
	parse(host, port, &d, &dl, 0);
	int fd = socket(fam, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket");
	if (bind(fd, (struct sockaddr *)&l, ll) < 0)
		return fail("bind");
	if (connect(fd, (struct sockaddr *)&d, dl) < 0)
		return fail("connect");
	report(fd, 1);
	return 0;
}

/* a dual-stack AF_INET6 UDP socket connected with a plain sockaddr_in (Linux allows it) */
static int do_udp6_connect4(const char *host4, int port)
{
	struct sockaddr_storage d;
	socklen_t dl;
	parse(host4, port, &d, &dl, AF_INET);
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	if (connect(fd, (struct sockaddr *)&d, dl) < 0)
		return fail("connect");
	if (send(fd, "x", 1, 0) < 0)
		return fail("send");
	report(fd, 1);
	return 0;
}

/* an AF_INET6 socket talking IPv4 through ::ffff:a.b.c.d */
static int do_v4mapped(const char *host4, int port)
{
	char mapped[64];
	snprintf(mapped, sizeof mapped, "::ffff:%s", host4);
	return connect_one(mapped, port, AF_INET6);
}

static int do_udp(const char *how, const char *host, int port, int count)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, 0);
	int fd = socket(fam, SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	char payload[] = "prisond-test";
	if (strcmp(how, "sendto") == 0) {
		if (sendto(fd, payload, sizeof payload, 0, (struct sockaddr *)&ss, len) < 0)
			return fail("sendto");
	} else if (strcmp(how, "sendmsg") == 0) {
		struct iovec iov = {payload, sizeof payload};
		struct msghdr m = {.msg_name = &ss, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1};
		if (sendmsg(fd, &m, 0) < 0)
			return fail("sendmsg");
	} else if (strcmp(how, "sendmmsg") == 0) {
		struct mmsghdr v[64];
		struct iovec iov = {payload, sizeof payload};
		if (count > 64)
			count = 64;
		memset(v, 0, sizeof v);
		for (int i = 0; i < count; i++) {
			v[i].msg_hdr.msg_name = &ss;
			v[i].msg_hdr.msg_namelen = len;
			v[i].msg_hdr.msg_iov = &iov;
			v[i].msg_hdr.msg_iovlen = 1;
		}
		int r = sendmmsg(fd, v, (unsigned)count, 0);
		if (r < 0)
			return fail("sendmmsg");
		int lens_ok = 1;
		for (int i = 0; i < r; i++)
			lens_ok &= v[i].msg_len == sizeof payload;
		printf("sent=%d lens_ok=%d\n", r, lens_ok);
	} else if (strcmp(how, "pktinfo") == 0) {
		/* ask for a source with IP_PKTINFO: the named host is the source to ask for */
		struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
		inet_pton(AF_INET, "127.0.0.9", &dst.sin_addr);
		char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		memset(cbuf, 0, sizeof cbuf);
		struct iovec iov = {payload, sizeof payload};
		struct msghdr m = {.msg_name = &dst, .msg_namelen = sizeof dst, .msg_iov = &iov, .msg_iovlen = 1,
				   .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
		struct in_pktinfo pi;
		memset(&pi, 0, sizeof pi);
		pi.ipi_spec_dst = ((struct sockaddr_in *)&ss)->sin_addr;
		memcpy(CMSG_DATA(c), &pi, sizeof pi);
		if (sendmsg(fd, &m, 0) < 0)
			return fail("sendmsg");
	}
	report(fd, 0);
	return 0;
}

static int do_fastopen(const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, 0);
	int fd = socket(fam, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket");
	const char msg[] = "fastopen";
	if (sendto(fd, msg, sizeof msg - 1, MSG_FASTOPEN, (struct sockaddr *)&ss, len) < 0)
		return fail("sendto");
	report(fd, 1);
	return 0;
}

struct targ {
	const char *host;
	int port;
};

static void *thread_main(void *p)
{
	struct targ *t = p;
	connect_one(t->host, t->port, 0);
	return NULL;
}

static int do_threads(int n, const char *host, int port)
{
	pthread_t th[64];
	struct targ t = {host, port};
	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, thread_main, &t);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	return 0;
}

static int do_fork(const char *host, int port)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(connect_one(host, port, 0));
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* exec the rest of argv with an empty environment */
static int do_exec_clean(char **argv)
{
	char *envp[] = {NULL};
	fflush(stdout);
	execve(argv[0], argv, envp);
	return fail("execve");
}

/* posix_spawnp the rest of argv with an empty environment, and wait for it */
static int do_spawn_clean(char **argv)
{
	char *envp[] = {NULL};
	pid_t pid;
	fflush(stdout);
	int e = posix_spawnp(&pid, argv[0], NULL, NULL, argv, envp);
	if (e) {
		errno = e;
		return fail("posix_spawnp");
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* clearenv(), then execl PROG with exactly three arguments */
static int do_clearenv_execl(char **argv)
{
	clearenv();
	fflush(stdout);
	execl(argv[0], argv[0], argv[1], argv[2], argv[3], (char *)NULL);
	return fail("execl");
}

/* the same calls through syscall(2), which no preload sees */
static int do_sys(const char *op, const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, 0);
	int stream = strcmp(op, "sendto") != 0;
	int fd = (int)syscall(SYS_socket, fam, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	if (!strcmp(op, "bind")) {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (syscall(SYS_bind, fd, &ss, len) < 0)
			return fail("bind");
		if (syscall(SYS_listen, fd, 16) < 0)
			return fail("listen");
		report(fd, 0);
		char b[1];
		ssize_t r = read(0, b, 1); /* hold the listener until stdin closes */
		(void)r;
		return 0;
	}
	if (!strcmp(op, "connect")) {
		if (syscall(SYS_connect, fd, &ss, len) < 0)
			return fail("connect");
		report(fd, 1);
		return 0;
	}
	if (syscall(SYS_sendto, fd, "raw-syscall", 11, 0, &ss, len) < 0)
		return fail("sendto");
	report(fd, 0);
	return 0;
}

/* execve through syscall(2) with an empty environment: nothing can put the preload back */
static int do_sys_exec_clean(char **argv)
{
	char *envp[] = {NULL};
	fflush(stdout);
	syscall(SYS_execve, argv[0], argv, envp);
	return fail("execve");
}

static unsigned short csum(const void *data, size_t n)
{
	const unsigned short *p = data;
	unsigned long sum = 0;
	for (; n > 1; n -= 2)
		sum += *p++;
	if (n)
		sum += *(const unsigned char *)p;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (unsigned short)~sum;
}

/* a UDP datagram from a forged source, written whole on a raw socket (IP_HDRINCL) */
static int do_raw_forge(const char *src, const char *dst, int port)
{
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0)
		return fail("socket");
	unsigned char pkt[sizeof(struct iphdr) + sizeof(struct udphdr) + 6];
	memset(pkt, 0, sizeof pkt);
	struct iphdr *ip = (struct iphdr *)pkt;
	struct udphdr *udp = (struct udphdr *)(pkt + sizeof *ip);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons(sizeof pkt);
	inet_pton(AF_INET, src, &ip->saddr);
	inet_pton(AF_INET, dst, &ip->daddr);
	ip->check = csum(ip, sizeof *ip);
	udp->source = htons(4242);
	udp->dest = htons(port);
	udp->len = htons(sizeof pkt - sizeof *ip);
	memcpy(pkt + sizeof *ip + sizeof *udp, "forged", 6);
	struct sockaddr_in to = {.sin_family = AF_INET};
	to.sin_addr.s_addr = ip->daddr;
	if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0)
		return fail("sendto");
	printf("ok sent\n");
	return 0;
}

static int do_hostname(int argc)
{
	char buf[256];
	struct utsname u;
	/* a length the compiler cannot see, so that _FORTIFY_SOURCE=2 calls __gethostname_chk */
	volatile size_t vlen = sizeof buf - (size_t)(argc > 1000);
	size_t len = vlen;
	if (gethostname(buf, len) < 0)
		return fail("gethostname");
	if (uname(&u) < 0)
		return fail("uname");
	printf("gethostname=%s uname=%s\n", buf, u.nodename);
	return 0;
}

static int do_socket(const char *what)
{
	int fd;
	if (strcmp(what, "raw") == 0)
		fd = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
	else if (strcmp(what, "packet") == 0)
		fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	else if (strcmp(what, "inet6") == 0)
		fd = socket(AF_INET6, SOCK_STREAM, 0);
	else if (strcmp(what, "inet") == 0)
		fd = socket(AF_INET, SOCK_STREAM, 0);
	else if (strcmp(what, "unix") == 0)
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
	else if (strcmp(what, "netlink-route") == 0)
		fd = socket(AF_NETLINK, SOCK_RAW, 0);
	else if (strcmp(what, "netlink-audit") == 0)
		fd = socket(AF_NETLINK, SOCK_RAW, 9);
	else
		return 2;
	if (fd < 0)
		return fail("socket");
	printf("ok fd\n");
	return 0;
}

static int do_ifaddrs(void)
{
	struct ifaddrs *ifa, *p;
	if (getifaddrs(&ifa) < 0)
		return fail("getifaddrs");
	for (p = ifa; p; p = p->ifa_next) {
		if (!p->ifa_addr || (p->ifa_addr->sa_family != AF_INET && p->ifa_addr->sa_family != AF_INET6))
			continue;
		char a[80];
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof ss);
		memcpy(&ss, p->ifa_addr, p->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
									    : sizeof(struct sockaddr_in6));
		printf("addr %s %s\n", p->ifa_name, fmt(&ss, a, sizeof a));
	}
	freeifaddrs(ifa);
	printf("done\n");
	return 0;
}

/* socket(FAM, TYPE, PROTO) with the numbers given: which protocols a prison may open */
static int do_socket3(int fam, int type, int proto)
{
	int fd = socket(fam, type, proto);
	if (fd < 0)
		return fail("socket");
	printf("ok fd\n");
	return 0;
}

/* a datagram socket of protocol PROTO (UDP-Lite, the ICMP ping sockets, ...): bind LOCAL
 * (port 0) unless "-", connect DEST:PORT unless DEST is "-", then send one datagram (an echo
 * request for the ping protocols, whose payload must start with one) */
static int do_dgram(int proto, const char *local, const char *dest, int port)
{
	struct sockaddr_storage l, d;
	socklen_t ll = 0, dl = 0;
	int fam = strcmp(local, "-") ? parse(local, 0, &l, &ll, 0) : parse(dest, port, &d, &dl, 0);
	if (strcmp(dest, "-"))
		parse(dest, port, &d, &dl, fam);
	int fd = socket(fam, SOCK_DGRAM, proto);
	if (fd < 0)
		return fail("socket");
	if (strcmp(local, "-") && bind(fd, (struct sockaddr *)&l, ll) < 0)
		return fail("bind");
	if (strcmp(dest, "-")) {
		if (connect(fd, (struct sockaddr *)&d, dl) < 0)
			return fail("connect");
		unsigned char msg[16] = "xxxxxxxxprisond";
		if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
			memset(msg, 0, 8);
			msg[0] = proto == IPPROTO_ICMP ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
		}
		if (send(fd, msg, sizeof msg, 0) < 0)
			return fail("send");
	}
	report(fd, 1);
	return 0;
}

/* a UDP socket bound to LOCAL (port 0), then sendto DEST:PORT */
static int do_udp_bound(const char *local, const char *dest, int port)
{
	struct sockaddr_storage l, d;
	socklen_t ll, dl;
	int fam = parse(local, 0, &l, &ll, 0);
	parse(dest, port, &d, &dl, fam);
	int fd = socket(fam, SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	if (bind(fd, (struct sockaddr *)&l, ll) < 0)
		return fail("bind");
	if (sendto(fd, "prisond-test", 12, 0, (struct sockaddr *)&d, dl) < 0)
		return fail("sendto");
	report(fd, 0);
	return 0;
}

/* a UDP socket connected to HOST:PORT, then one send() */
static int do_udp_connect(const char *host, int port)
{
	struct sockaddr_storage d;
	socklen_t dl;
	int fam = parse(host, port, &d, &dl, 0);
	int fd = socket(fam, SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	if (connect(fd, (struct sockaddr *)&d, dl) < 0)
		return fail("connect");
	if (send(fd, "prisond-test", 12, 0) < 0)
		return fail("send");
	report(fd, 1);
	return 0;
}

static int set_reuse(int fd, const char *how)
{
	int one = 1;
	if (!strcmp(how, "addr") || !strcmp(how, "both"))
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (!strcmp(how, "port") || !strcmp(how, "both"))
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	return fd;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* a UDP socket bound to HOST:PORT with REUSE (none, addr, port, both); prints a "got" line
 * per datagram for SECONDS, then "done n=N" */
static int do_udp_recv(const char *host, int port, const char *reuse, double seconds)
{
	struct sockaddr_storage ss, from;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, 0);
	int fd = set_reuse(socket(fam, SOCK_DGRAM, 0), reuse);
	if (fd < 0)
		return fail("socket");
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return fail("bind");
	report(fd, 0);
	struct timeval tv = {0, 100000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int n = 0;
	char buf[256], a[80];
	for (double end = mono() + seconds; mono() < end;) {
		socklen_t fl = sizeof from;
		ssize_t r = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
		if (r < 0)
			continue;
		n++;
		printf("got from=%s\n", fmt(&from, a, sizeof a));
	}
	printf("done n=%d\n", n);
	return 0;
}

/* N times: a UDP socket with SO_REUSEADDR bound to HOST:PORT, and whatever it received by
 * then (a datagram that got into its queue before a refused bind let go of the port counts) */
static int do_udp_steal(const char *host, int port, int n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = parse(host, port, &ss, &len, 0);
	int bound = 0, stolen = 0;
	char buf[256];
	for (int i = 0; i < n; i++) {
		int fd = set_reuse(socket(fam, SOCK_DGRAM, 0), "addr");
		if (fd < 0)
			return fail("socket");
		if (bind(fd, (struct sockaddr *)&ss, len) == 0)
			bound++;
		while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
			stolen++;
		close(fd);
	}
	printf("bound=%d stolen=%d\n", bound, stolen);
	return 0;
}

/* Reuse of a remembered socket's number (the shim's bound-socket cache, prisonshim.c): a UDP
 * socket sends three times (bound by the first, remembered by the second), then its number
 * comes to mean a fresh, unbound UDP socket by way HOW, and that one sends once.  The end of
 * the old socket and the making of the new go one through libc and one past it (a raw
 * syscall), so that only the libc side can have told the shim.  Every datagram must leave from
 * the prison's address.  Prints "reused=N sent=4". */
static int raw_udp(void)
{
	return (int)syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0);
}

union rights {
	char buf[CMSG_SPACE(sizeof(int))];
	struct cmsghdr align;
};

/* fd sent with SCM_RIGHTS into a new unix socket pair sv, then closed past libc (it lives on
 * in flight); 0, or -1 */
static int send_away(int fd, int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
		return -1;
	char c = 'x';
	struct iovec iov = {&c, 1};
	union rights u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	if (sendmsg(sv[0], &m, 0) < 0)
		return -1;
	syscall(SYS_close, fd);
	return 0;
}

/* fresh goes over a unix socket pair and comes back, after `old` was ended past libc: the
 * lowest free number, old's, is the one it comes back as */
static int pass_over(int fresh, int old, int use_mmsg)
{
	int sv[2];
	if (send_away(fresh, sv) < 0)
		return -1;
	syscall(SYS_close, old);
	char c;
	struct iovec iov = {&c, 1};
	union rights u;
	struct msghdr r = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	if (use_mmsg) {
		struct mmsghdr v = {.msg_hdr = r};
		if (recvmmsg(sv[1], &v, 1, 0, NULL) != 1)
			return -1;
		r = v.msg_hdr;
	} else if (recvmsg(sv[1], &r, 0) < 0) {
		return -1;
	}
	int got = -1;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&r);
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&got, CMSG_DATA(cm), sizeof got);
	return got;
}

/* libc's other public names for close, dup2 and fcntl */
extern int __close(int);
extern int __dup2(int, int);
extern int __fcntl(int, int, ...);

struct reuse_child {
	int fd;
	struct sockaddr_storage *ss;
	socklen_t len;
};

/* clone(CLONE_VM) child: this memory, its own table.  It makes its number a bound socket and
 * sends on it, which must not tell the parent's shim that the parent's socket is bound. */
static int vm_child(void *arg)
{
	struct reuse_child *c = arg;
	close(c->fd);
	if (socket(AF_INET, SOCK_DGRAM, 0) != c->fd)
		return 3;
	for (int i = 0; i < 3; i++)
		if (sendto(c->fd, "before", 6, 0, (struct sockaddr *)c->ss, c->len) < 0)
			return 4;
	return 0;
}

/* clone(CLONE_FILES) child: the parent's table, its own memory.  It turns the parent's
 * remembered number into a fresh unbound socket. */
static int files_child(void *arg)
{
	struct reuse_child *c = arg;
	close(c->fd);
	return socket(AF_INET, SOCK_DGRAM, 0) == c->fd ? 0 : 3;
}

static int run_clone(int (*fn)(void *), int flags, struct reuse_child *c)
{
	static char stack[256 * 1024] __attribute__((aligned(16)));
	pid_t pid = clone(fn, stack + sizeof stack, flags | SIGCHLD, c);
	if (pid < 0)
		return fail("clone");
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("err clone child ended %d\n", status);
		return 1;
	}
	return 0;
}

/* A thread that takes a table of its own (close_range CLOSE_RANGE_UNSHARE) and makes its copy
 * of the number a fresh socket; then the main thread's sends have the shared memory say
 * "bound" for the main table's socket; then the thread sends on its unbound one. */
static pthread_barrier_t unshare_step;

static void *unshared_sender(void *arg)
{
	struct reuse_child *c = arg;
	long ok = close_range(~0U, ~0U, CLOSE_RANGE_UNSHARE) == 0;
	close(c->fd);
	ok = ok && socket(AF_INET, SOCK_DGRAM, 0) == c->fd;
	pthread_barrier_wait(&unshare_step); /* the main thread sends */
	pthread_barrier_wait(&unshare_step);
	ok = ok && sendto(c->fd, "after", 5, 0, (struct sockaddr *)c->ss, c->len) == 5;
	return (void *)ok;
}

/* fresh arrives on old's number by a recvmsg that fails (EFAULT: its msghdr is read-only, so
 * the kernel cannot write back msg_flags) after the kernel installed it; old was closed
 * inside libc (fclose), where the shim does not see it */
static int failing_pass(int fresh, int old)
{
	int sv[2];
	if (send_away(fresh, sv) < 0)
		return -1;
	fclose(fdopen(old, "w"));
	char in[8];
	struct iovec riov = {in, sizeof in};
	union rights r;
	memset(&r, 0, sizeof r);
	struct msghdr *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	*ro = (struct msghdr){.msg_iov = &riov, .msg_iovlen = 1, .msg_control = r.buf, .msg_controllen = sizeof r.buf};
	mprotect(ro, 4096, PROT_READ);
	if (recvmsg(sv[1], ro, 0) >= 0 || errno != EFAULT)
		return -1;
	int got = -1;
	memcpy(&got, CMSG_DATA(&r.align), sizeof got);
	return got;
}

static int do_udp_reuse(const char *how, const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	parse(host, port, &ss, &len, AF_INET);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	struct reuse_child child = {fd, &ss, len};
	if (!strcmp(how, "clone-vm")) { /* the child sends the three, on its own socket */
		if (run_clone(vm_child, CLONE_VM, &child))
			return 1;
	} else if (!strcmp(how, "close_range-unshare")) { /* one send, the thread's step, two */
		pthread_t t;
		void *ok = NULL;
		pthread_barrier_init(&unshare_step, NULL, 2);
		if (sendto(fd, "before", 6, 0, (struct sockaddr *)&ss, len) < 0 ||
		    pthread_create(&t, NULL, unshared_sender, &child) != 0)
			return fail("unshared thread");
		pthread_barrier_wait(&unshare_step);
		for (int i = 0; i < 2; i++)
			if (sendto(fd, "before", 6, 0, (struct sockaddr *)&ss, len) < 0)
				return fail("sendto");
		pthread_barrier_wait(&unshare_step); /* the thread sends the "after" one */
		if (pthread_join(t, &ok) != 0 || !ok)
			return fail("unshared thread");
		printf("reused=%d sent=4\n", fd);
		return 0;
	} else {
		for (int i = 0; i < 3; i++)
			if (sendto(fd, "before", 6, 0, (struct sockaddr *)&ss, len) < 0)
				return fail("sendto");
	}
	int now = -1;
	if (!strcmp(how, "fork")) { /* the child changes the number past libc, then sends */
		pid_t pid = fork();
		if (pid == 0) {
			syscall(SYS_close, fd);
			_exit(raw_udp() == fd && sendto(fd, "after", 5, 0, (struct sockaddr *)&ss, len) == 5 ? 0 : 3);
		}
		int status;
		if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return fail("fork child");
		printf("reused=%d sent=4\n", fd);
		return 0;
	}
	if (!strcmp(how, "recvmsg-efault")) {
		now = failing_pass(raw_udp(), fd);
	} else if (!strcmp(how, "clone-vm")) {
		now = fd;
	} else if (!strcmp(how, "clone-files")) {
		if (run_clone(files_child, CLONE_FILES, &child))
			return 1;
		now = fd;
	} else if (!strcmp(how, "__close")) {
		__close(fd);
		now = raw_udp();
	} else if (!strcmp(how, "__dup2")) {
		int fresh = raw_udp();
		now = __dup2(fresh, fd);
		syscall(SYS_close, fresh);
	} else if (!strcmp(how, "__fcntl")) {
		int fresh = raw_udp();
		syscall(SYS_close, fd);
		now = __fcntl(fresh, F_DUPFD, 0);
		syscall(SYS_close, fresh);
	} else if (!strcmp(how, "pidfd_getfd")) { /* a child's unbound socket, taken from it */
		int fresh = raw_udp();
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		syscall(SYS_close, fresh);
		syscall(SYS_close, fd);
		now = pidfd_getfd(pidfd, fresh, 0);
		if (now < 0)
			perror("pidfd_getfd");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	} else if (!strcmp(how, "close")) { /* ended through libc, made past it */
		close(fd);
		now = raw_udp();
	} else if (!strcmp(how, "close_range")) {
		close_range((unsigned)fd, (unsigned)fd, 0);
		now = raw_udp();
	} else if (!strcmp(how, "closefrom")) {
		closefrom(fd);
		now = raw_udp();
	} else if (!strcmp(how, "dup2") || !strcmp(how, "dup3")) { /* one call does both */
		int fresh = raw_udp();
		now = !strcmp(how, "dup2") ? dup2(fresh, fd) : dup3(fresh, fd, 0);
		syscall(SYS_close, fresh);
	} else if (!strcmp(how, "dup") || !strcmp(how, "fcntl")) { /* ended past libc, made through it */
		int fresh = raw_udp();
		syscall(SYS_close, fd);
		now = !strcmp(how, "dup") ? dup(fresh) : fcntl(fresh, F_DUPFD, 0);
		syscall(SYS_close, fresh);
	} else if (!strcmp(how, "socket")) {
		syscall(SYS_close, fd);
		now = socket(AF_INET, SOCK_DGRAM, 0);
	} else if (!strcmp(how, "recvmsg") || !strcmp(how, "recvmmsg")) {
		now = pass_over(raw_udp(), fd, !strcmp(how, "recvmmsg"));
	} else {
		fprintf(stderr, "unknown way %s\n", how);
		return 2;
	}
	if (now != fd) {
		printf("err no reuse: %d became %d\n", fd, now);
		return 1;
	}
	if (sendto(fd, "after", 5, 0, (struct sockaddr *)&ss, len) < 0)
		return fail("sendto after");
	printf("reused=%d sent=4\n", fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: nettool MODE ...\n");
		return 2;
	}
	const char *m = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(m, "bind") && argc >= 4)
		return do_bind(argv[2], atoi(argv[3]), 0, argc > 4 ? atoi(argv[4]) : -1, 0);
	if (!strcmp(m, "serve") && argc >= 4)
		return do_bind(argv[2], atoi(argv[3]), 1, argc > 4 ? atoi(argv[4]) : -1, 0);
	if (!strcmp(m, "serve-rp") && argc >= 4)
		return do_bind(argv[2], atoi(argv[3]), 1, argc > 4 ? atoi(argv[4]) : -1, 1);
	if (!strcmp(m, "socket3") && argc >= 5)
		return do_socket3(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (!strcmp(m, "dgram") && argc >= 6)
		return do_dgram(atoi(argv[2]), argv[3], argv[4], atoi(argv[5]));
	if (!strcmp(m, "udp-reuse") && argc >= 5)
		return do_udp_reuse(argv[2], argv[3], atoi(argv[4]));
	if (!strcmp(m, "udp-bound") && argc >= 5)
		return do_udp_bound(argv[2], argv[3], atoi(argv[4]));
	if (!strcmp(m, "udp-connect") && argc >= 4)
		return do_udp_connect(argv[2], atoi(argv[3]));
	if (!strcmp(m, "udp-recv") && argc >= 6)
		return do_udp_recv(argv[2], atoi(argv[3]), argv[4], atof(argv[5]));
	if (!strcmp(m, "udp-steal") && argc >= 5)
		return do_udp_steal(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (!strcmp(m, "bind-unspec"))
		return do_bind_unspec();
	if (!strcmp(m, "listen-unbound") && argc >= 3)
		return do_listen_unbound(!strcmp(argv[2], "6") ? AF_INET6 : AF_INET, argc > 3);
	if (!strcmp(m, "connect") && argc >= 4)
		return connect_one(argv[2], atoi(argv[3]), 0);
	if (!strcmp(m, "bound-connect") && argc >= 5)
		return do_bound_connect(argv[2], argv[3], atoi(argv[4]));
	if (!strcmp(m, "udp6-connect4") && argc >= 4)
		return do_udp6_connect4(argv[2], atoi(argv[3]));
	if (!strcmp(m, "v4mapped") && argc >= 4)
		return do_v4mapped(argv[2], atoi(argv[3]));
	if (!strcmp(m, "udp") && argc >= 5)
		return do_udp(argv[2], argv[3], atoi(argv[4]), argc > 5 ? atoi(argv[5]) : 1);
	if (!strcmp(m, "fastopen") && argc >= 4)
		return do_fastopen(argv[2], atoi(argv[3]));
	if (!strcmp(m, "threads") && argc >= 5)
		return do_threads(atoi(argv[2]), argv[3], atoi(argv[4]));
	if (!strcmp(m, "fork") && argc >= 4)
		return do_fork(argv[2], atoi(argv[3]));
	if (!strcmp(m, "exec-clean") && argc >= 3)
		return do_exec_clean(argv + 2);
	if (!strcmp(m, "spawn-clean") && argc >= 3)
		return do_spawn_clean(argv + 2);
	if (!strcmp(m, "clearenv-execl") && argc == 6)
		return do_clearenv_execl(argv + 2);
	if (!strcmp(m, "sys") && argc >= 5)
		return do_sys(argv[2], argv[3], atoi(argv[4]));
	if (!strcmp(m, "sys-exec-clean") && argc >= 3)
		return do_sys_exec_clean(argv + 2);
	if (!strcmp(m, "raw-forge") && argc >= 5)
		return do_raw_forge(argv[2], argv[3], atoi(argv[4]));
	if (!strcmp(m, "hostname"))
		return do_hostname(argc);
	if (!strcmp(m, "socket") && argc >= 3)
		return do_socket(argv[2]);
	if (!strcmp(m, "sethostname")) {
		if (sethostname("evil", 4) < 0)
			return fail("sethostname");
		printf("ok sethostname\n");
		return 0;
	}
	if (!strcmp(m, "ifaddrs"))
		return do_ifaddrs();
	fprintf(stderr, "nettool: bad arguments\n");
	return 2;
}
