/*
 * prisonshim: the LD_PRELOAD half of a prison.
 *
 * Loaded into every dynamically linked program the daemon starts in a prison, it gives
 * FreeBSD jail semantics on the shared network stack: bind, connect, listen and send are
 * forced onto the prison's addresses, the hostname is the prison's, and only the prison's
 * addresses are listed.  The policy comes from PRISOND_POLICY, parsed once at load.
 *
 * The shim is a convenience layer, not a boundary: anything that does not enter libc through
 * the dynamic linker (static binaries, raw syscall instructions, io_uring, libc-internal
 * calls such as the resolver's) never reaches it.  The kernel layer is the guarantee.
 *
 * Structure, per call (after socket_wrapper): real_X (resolved once) -> prison_X (logic) ->
 * exported X (thin).  Rules the code keeps:
 *  - no malloc, getenv or stdio after initialisation: the per-call path only reads the
 *    immutable policy, so it is thread-safe and fork-safe without locks;
 *  - the caller's memory is never written: sockaddrs and msghdrs are copied to the stack;
 *  - internal failures set errno and return -1; the shim never exits its host program;
 *  - the socket's own family (from getsockname) decides, not the family the caller claims.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <linux/close_range.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "contract.h" /* written by setup.py from prisond/model/contract.py */

#define EXPORT __attribute__((visibility("default")))

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_ADDRS PD_MAX_ADDRESSES
#define POLICY_MAX PD_POLICY_MAX
#define HOST_MAX PD_HOSTNAME_MAX
#define SENDMMSG_CHUNK 32

/* Policy flags, one letter each in the f= field. */
#define F_RAW 0x1    /* PD_FLAG_RAW: allow.raw_sockets */
#define F_KERNEL 0x2 /* PD_FLAG_KERNEL: the kernel layer is in force and does the network rewrites */
#define F_ANYAF 0x4  /* PD_FLAG_ANYAF: allow.socket_af */

extern char **environ;

union sa {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_storage ss;
};

static struct policy {
	int jailed;
	unsigned flags;
	int n4, n6;
	struct in_addr ip4[MAX_ADDRS];
	struct in6_addr ip6[MAX_ADDRS];
	struct in_addr lo4;  /* where 127.0.0.1 goes: the primary or a per-prison loopback */
	struct in6_addr lo6; /* where ::1 goes */
	char hostname[HOST_MAX + 1];
	size_t hostlen;
	char sock[108];                       /* s=: the daemon's control socket (virtual status) */
	struct sockaddr_un events;            /* events.sock beside it: the audit datagrams */
	char env_policy[POLICY_MAX + 32];     /* "PRISOND_POLICY=..." for exec */
	char env_preload[PATH_MAX + 16];      /* "LD_PRELOAD=<this library>" */
	const char *self;                     /* path of this library inside env_preload */
	int debug;
} P;

static struct {
	int (*socket)(int, int, int);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
	int (*gethostname)(char *, size_t);
	int (*gethostname_chk)(char *, size_t, size_t);
	int (*uname)(struct utsname *);
	int (*sethostname)(const char *, size_t);
	int (*setdomainname)(const char *, size_t);
	int (*getifaddrs)(struct ifaddrs **);
	void (*freeifaddrs)(struct ifaddrs *);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
	int (*open)(const char *, int, ...);
	int (*open64)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*openat64)(int, const char *, int, ...);
	int (*open_2)(const char *, int);
	int (*open64_2)(const char *, int);
	int (*openat_2)(int, const char *, int);
	int (*openat64_2)(int, const char *, int);
	FILE *(*fopen)(const char *, const char *);
	FILE *(*fopen64)(const char *, const char *);
	/* only so that the bound-socket cache forgets a descriptor number that is reused */
	int (*close)(int);
	int (*close_range)(unsigned int, unsigned int, int);
	void (*closefrom)(int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*socketpair)(int, int, int, int[2]);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
	int (*pidfd_getfd)(int, int, unsigned int);
	int (*clone)(int (*)(void *), void *, int, void *, ...);
	int (*unshare)(int);
} real;

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ---- diagnostics: write(2) only, never stdio ---- */

static void say(const char *a, const char *b)
{
	char buf[512];
	size_t n = 0;
	const char *parts[3] = {"prisond-shim: ", a, b};
	for (int i = 0; i < 3; i++) {
		for (const char *s = parts[i]; s && *s && n < sizeof buf - 1; s++)
			buf[n++] = *s;
	}
	buf[n++] = '\n';
	int saved = errno;
	ssize_t r = write(2, buf, n);
	(void)r;
	errno = saved;
}

/* "what A -> B" (or "what A" without B) into msg. */
static void describe(char *msg, size_t cap, const char *what, const union sa *from, const union sa *to)
{
	char a[INET6_ADDRSTRLEN] = "?", b[INET6_ADDRSTRLEN] = "?";
	if (from)
		inet_ntop(from->sa.sa_family,
			  from->sa.sa_family == AF_INET ? (const void *)&from->in.sin_addr : (const void *)&from->in6.sin6_addr,
			  a, sizeof a);
	if (to)
		inet_ntop(to->sa.sa_family,
			  to->sa.sa_family == AF_INET ? (const void *)&to->in.sin_addr : (const void *)&to->in6.sin6_addr,
			  b, sizeof b);
	size_t n = 0;
	const char *parts[5] = {what, " ", from ? a : "", to ? " -> " : "", to ? b : ""};
	for (int i = 0; i < 5; i++)
		for (const char *s = parts[i]; *s && n < cap - 1; s++)
			msg[n++] = *s;
	msg[n] = 0;
}

static void debug_addr(const char *what, const union sa *from, const union sa *to)
{
	if (!P.debug)
		return;
	char msg[160];
	describe(msg, sizeof msg, what, from, to);
	say(msg, "");
}

/* ---- audit: what the shim coerced or refused, told to the daemon ----
 * One datagram ("coerced|refused <op> <addresses>") to the daemon's events socket, next to its
 * control socket; never blocking (MSG_DONTWAIT), at most AUDIT_PER_SECOND per process and
 * second, errno kept.  The daemon learns the sender from the kernel (SCM_CREDENTIALS). */

#define AUDIT_PER_SECOND 10
static _Atomic long audit_second;
static _Atomic int audit_sent;

static void audit(const char *kind, const char *what, const union sa *from, const union sa *to)
{
	if (!P.events.sun_path[0])
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	if (atomic_exchange(&audit_second, (long)ts.tv_sec) != (long)ts.tv_sec)
		atomic_store(&audit_sent, 0);
	if (atomic_fetch_add(&audit_sent, 1) >= AUDIT_PER_SECOND)
		return;
	int saved = errno;
	char msg[200];
	size_t k = strlen(kind);
	memcpy(msg, kind, k);
	msg[k] = ' ';
	describe(msg + k + 1, sizeof msg - k - 1, what, from, to);
	int fd = real.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0) {
		real.sendto(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&P.events,
			    sizeof P.events);
		close(fd);
	}
	errno = saved;
}

/* ---- initialisation: the only place that reads the environment ---- */

static int copy_field(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		return -1;
	memcpy(dst, src, len);
	dst[len] = 0;
	return 0;
}

/* Parse "a,b,c" into an address array; returns -1 on any malformed entry. */
static int parse_addrs(int family, const char *s, size_t len, void *out, int *count)
{
	size_t i = 0;
	*count = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && s[j] != ',')
			j++;
		char tmp[INET6_ADDRSTRLEN];
		if (*count >= MAX_ADDRS || copy_field(tmp, sizeof tmp, s + i, j - i) < 0)
			return -1;
		void *slot = family == AF_INET ? (void *)&((struct in_addr *)out)[*count]
					       : (void *)&((struct in6_addr *)out)[*count];
		if (inet_pton(family, tmp, slot) != 1)
			return -1;
		(*count)++;
		i = j + 1;
	}
	return 0;
}

/* The policy (PD_POLICY_VAR), as prisond/model/contract.py defines it:
 * "1;n=NAME;h=HOST;4=A,B;6=A,B;f=FLAGS[;s=SOCKET]" */
static int parse_policy(const char *s)
{
	size_t len = strlen(s);
	if (len > POLICY_MAX || s[0] != PD_POLICY_VERSION || s[1] != ';')
		return -1;
	size_t i = 2;
	while (i < len) {
		size_t j = i;
		while (j < len && s[j] != ';')
			j++;
		const char *eq = memchr(s + i, '=', j - i);
		if (!eq)
			return -1;
		size_t klen = (size_t)(eq - (s + i));
		const char *v = eq + 1;
		size_t vlen = (size_t)((s + j) - v);
		const char *k = s + i;
		if (klen == 1 && k[0] == 'h') {
			if (copy_field(P.hostname, sizeof P.hostname, v, vlen) < 0)
				return -1;
			P.hostlen = vlen;
		} else if (klen == 1 && k[0] == '4') {
			if (parse_addrs(AF_INET, v, vlen, P.ip4, &P.n4) < 0)
				return -1;
		} else if (klen == 1 && k[0] == '6') {
			if (parse_addrs(AF_INET6, v, vlen, P.ip6, &P.n6) < 0)
				return -1;
		} else if (klen == 1 && k[0] == 's') {
			if (copy_field(P.sock, sizeof P.sock, v, vlen) < 0)
				return -1;
			const char *slash = memrchr(v, '/', vlen);
			size_t dir = slash ? (size_t)(slash - v) + 1 : 0;
			if (dir + sizeof PD_EVENTS_SOCKET <= sizeof P.events.sun_path) {
				P.events.sun_family = AF_UNIX;
				memcpy(P.events.sun_path, v, dir);
				memcpy(P.events.sun_path + dir, PD_EVENTS_SOCKET, sizeof PD_EVENTS_SOCKET);
			}
		} else if (klen == 1 && k[0] == 'f') {
			for (size_t x = 0; x < vlen; x++) {
				if (v[x] == PD_FLAG_RAW)
					P.flags |= F_RAW;
				else if (v[x] == PD_FLAG_KERNEL)
					P.flags |= F_KERNEL;
				else if (v[x] == PD_FLAG_ANYAF)
					P.flags |= F_ANYAF;
			}
		}
		/* unknown keys (n=) are for people */
		i = j + 1;
	}
	if (P.hostlen == 0)
		return -1;
	if (P.n4)
		P.lo4 = P.ip4[0];
	if (P.n6)
		P.lo6 = P.ip6[0];
	return 0;
}

#define RESOLVE(field, sym) real.field = (__typeof__(real.field))dlsym(RTLD_NEXT, sym)

static void init(void)
{
	RESOLVE(socket, "socket");
	RESOLVE(bind, "bind");
	RESOLVE(connect, "connect");
	RESOLVE(listen, "listen");
	RESOLVE(sendto, "sendto");
	RESOLVE(sendmsg, "sendmsg");
	RESOLVE(sendmmsg, "sendmmsg");
	RESOLVE(gethostname, "gethostname");
	RESOLVE(gethostname_chk, "__gethostname_chk");
	RESOLVE(uname, "uname");
	RESOLVE(sethostname, "sethostname");
	RESOLVE(setdomainname, "setdomainname");
	RESOLVE(getifaddrs, "getifaddrs");
	RESOLVE(freeifaddrs, "freeifaddrs");
	RESOLVE(execve, "execve");
	RESOLVE(execvpe, "execvpe");
	RESOLVE(fexecve, "fexecve");
	RESOLVE(posix_spawn, "posix_spawn");
	RESOLVE(posix_spawnp, "posix_spawnp");
	RESOLVE(open, "open");
	RESOLVE(open64, "open64");
	RESOLVE(openat, "openat");
	RESOLVE(openat64, "openat64");
	RESOLVE(open_2, "__open_2");
	RESOLVE(open64_2, "__open64_2");
	RESOLVE(openat_2, "__openat_2");
	RESOLVE(openat64_2, "__openat64_2");
	RESOLVE(fopen, "fopen");
	RESOLVE(fopen64, "fopen64");
	RESOLVE(close, "close");
	RESOLVE(close_range, "close_range");
	RESOLVE(closefrom, "closefrom");
	RESOLVE(dup, "dup");
	RESOLVE(dup2, "dup2");
	RESOLVE(dup3, "dup3");
	RESOLVE(fcntl, "fcntl");
	RESOLVE(fcntl64, "fcntl64");
	RESOLVE(socketpair, "socketpair");
	RESOLVE(accept, "accept");
	RESOLVE(accept4, "accept4");
	RESOLVE(recvmsg, "recvmsg");
	RESOLVE(recvmmsg, "recvmmsg");
	RESOLVE(pidfd_getfd, "pidfd_getfd");
	RESOLVE(clone, "clone");
	RESOLVE(unshare, "unshare");

	const char *pol = getenv(PD_POLICY_VAR);
	if (!pol)
		return; /* not in a prison: every wrapper passes through */
	P.jailed = 1;
	P.debug = getenv("PRISOND_SHIM_DEBUG") != NULL;
	size_t plen = strlen(pol);
	if (plen <= POLICY_MAX) {
		memcpy(P.env_policy, PD_POLICY_VAR "=", sizeof PD_POLICY_VAR);
		memcpy(P.env_policy + sizeof PD_POLICY_VAR, pol, plen + 1);
	}
	if (parse_policy(pol) < 0) {
		/* Fail closed: a prison with no addresses can open no inet socket. */
		say("malformed PRISOND_POLICY; no network for this process", "");
		P.n4 = P.n6 = 0;
		P.flags = 0;
		if (!P.hostlen) {
			memcpy(P.hostname, "prison", 7);
			P.hostlen = 6;
		}
	}
	Dl_info info;
	const char *self = NULL;
	if (dladdr((void *)&init, &info) && info.dli_fname && info.dli_fname[0] == '/')
		self = info.dli_fname;
	if (self && strlen(self) < PATH_MAX) {
		memcpy(P.env_preload, "LD_PRELOAD=", 11);
		memcpy(P.env_preload + 11, self, strlen(self) + 1);
		P.self = P.env_preload + 11;
	}
}

__attribute__((constructor)) static void shim_load(void)
{
	pthread_once(&once, init);
}

static inline void ensure(void)
{
	pthread_once(&once, init);
}

/* ---- policy decisions: pure functions of the policy and the addresses ---- */

static int in4_list(struct in_addr a)
{
	for (int i = 0; i < P.n4; i++)
		if (P.ip4[i].s_addr == a.s_addr)
			return 1;
	return 0;
}

static int in6_list(const struct in6_addr *a)
{
	for (int i = 0; i < P.n6; i++)
		if (IN6_ARE_ADDR_EQUAL(&P.ip6[i], a))
			return 1;
	return 0;
}

/* What a bind to `want` becomes.  0 with *out set, or an errno. */
static int local4(struct in_addr want, struct in_addr *out)
{
	if (P.n4 == 0)
		return EADDRNOTAVAIL;
	if (want.s_addr == htonl(INADDR_ANY)) {
		/* FreeBSD keeps a multi-address wildcard, which is only safe where the kernel
		 * filters ingress; the shim alone (it runs only without the kernel layer) narrows it
		 * to the primary. */
		*out = P.ip4[0];
		return 0;
	}
	if (in4_list(want)) {
		*out = want;
		return 0;
	}
	if (want.s_addr == htonl(INADDR_LOOPBACK)) {
		*out = P.lo4;
		return 0;
	}
	return EADDRNOTAVAIL;
}

static int local6(const struct in6_addr *want, struct in6_addr *out)
{
	if (IN6_IS_ADDR_V4MAPPED(want)) {
		struct in_addr a4, o4;
		memcpy(&a4, &want->s6_addr[12], 4);
		int err = local4(a4, &o4);
		if (err)
			return err;
		*out = *want;
		memcpy(&out->s6_addr[12], &o4, 4);
		return 0;
	}
	if (P.n6 == 0)
		return EADDRNOTAVAIL;
	if (IN6_IS_ADDR_UNSPECIFIED(want)) {
		/* FreeBSD keeps it unless v6-only with exactly one address; a wildcard is safe only
		 * where the kernel filters, so the shim alone narrows it to the v6 primary. */
		*out = P.ip6[0];
		return 0;
	}
	if (in6_list(want)) {
		*out = *want;
		return 0;
	}
	if (IN6_IS_ADDR_LOOPBACK(want)) {
		*out = P.lo6;
		return 0;
	}
	return EADDRNOTAVAIL;
}

/* Destination rewrite: only exactly 127.0.0.1 / ::1 (and ::ffff:127.0.0.1). */
static int remote_rewrite(union sa *d)
{
	if (d->sa.sa_family == AF_INET) {
		if (d->in.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && P.n4 &&
		    !in4_list(d->in.sin_addr)) {
			d->in.sin_addr = P.lo4;
			return 1;
		}
	} else if (d->sa.sa_family == AF_INET6) {
		struct in6_addr *a = &d->in6.sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			struct in_addr a4;
			memcpy(&a4, &a->s6_addr[12], 4);
			if (a4.s_addr == htonl(INADDR_LOOPBACK) && P.n4 && !in4_list(a4)) {
				memcpy(&a->s6_addr[12], &P.lo4, 4);
				return 1;
			}
		} else if (IN6_IS_ADDR_LOOPBACK(a) && P.n6 && !in6_list(a)) {
			*a = P.lo6;
			return 1;
		}
	}
	return 0;
}

/* ---- socket inspection ---- */

struct fdinfo {
	int family;  /* the socket's own domain */
	int unbound; /* no local address and no port yet */
};

/* 0 for an inet socket (fi filled), 1 for anything else, which the caller passes through. */
static int inspect(int fd, struct fdinfo *fi)
{
	union sa sa;
	socklen_t len = sizeof sa;
	memset(&sa, 0, sizeof(sa.in6));
	if (getsockname(fd, &sa.sa, &len) < 0)
		return 1;
	fi->family = sa.sa.sa_family;
	if (fi->family == AF_INET)
		fi->unbound = sa.in.sin_addr.s_addr == 0 && sa.in.sin_port == 0;
	else if (fi->family == AF_INET6)
		fi->unbound = IN6_IS_ADDR_UNSPECIFIED(&sa.in6.sin6_addr) && sa.in6.sin6_port == 0;
	else
		return 1;
	return 0;
}

/* ---- the bound-socket cache: a send asks the socket once, not at every call ----
 *
 * A send on an inet socket must know whether the socket is bound (an unbound one is bound to
 * the prison's address first), which costs a getsockname per call: 1.2x the cost of a UDP
 * sendto on loopback.  A socket, once bound, stays bound for as long as it lives (the shim
 * binds with an explicit address, which a disconnect keeps), and its family never changes.
 * So once getsockname has shown a send's socket bound, its descriptor number is remembered
 * here (one byte: its family) and later sends on it trust that.
 *
 * What makes the memory wrong is the number coming to mean another socket.  Every libc entry
 * that ends a descriptor or gives one out is wrapped to forget the number: close, close_range,
 * closefrom, dup, dup2, dup3, fcntl(F_DUPFD*), socket, socketpair, accept, accept4, recvmsg
 * and recvmmsg (descriptors passed with SCM_RIGHTS); a connect forgets it too (a disconnect
 * can unbind a socket someone else bound).  Paths the shim never sees (a raw syscall, libc's
 * own internal closes as in fclose of an fdopen'd socket, io_uring) are outside what the shim
 * guarantees at all; the kernel layer holds there.
 *
 * One byte per number below FDCACHE_MAX, in an anonymous mapping made at the first send
 * (only pages touched are backed), wiped in a fork's child (MADV_WIPEONFORK).
 * Every forgetting raises an epoch first; a remembering notes the epoch before its look
 * (getsockname) and undoes itself if the epoch moved by the time its entry is written, so a
 * close and a new socket on the number in another thread during the look never leave a stale
 * entry.  A send that races such a close and new socket can still go out on the new socket
 * unbound: the same race the getsockname before each send always had. */
#define FDCACHE_MAX (1 << 20)
static unsigned char *fdcache;   /* fd -> FC_4 / FC_6 when known bound, else 0 */
static int fdcache_top = -1;     /* the highest number ever remembered */
static unsigned long fd_epoch;   /* counts forgettings: a look a forgetting overtook is not kept */
static int fdcache_off;          /* memory and descriptor table may part ways: never trust it */
#define FC_4 1
#define FC_6 2

/* The epoch goes up before the entry is cleared, and a remembering checks the epoch after it
 * has written: either it sees the rise and undoes its write, or the clearing comes after it. */
static inline void fd_clear(unsigned char *c, int fd)
{
	if (c && fd >= 0 && fd < FDCACHE_MAX && __atomic_load_n(&c[fd], __ATOMIC_SEQ_CST))
		__atomic_store_n(&c[fd], 0, __ATOMIC_SEQ_CST);
}

/* With the kernel layer in force (f=k) the kernel rewrites binds, connects and sends with the
 * prison's current policy; the shim's copy of the policy is fixed at exec and would go stale
 * when a reload changes the addresses, so the shim leaves those calls alone. */
static inline int coerce(void)
{
	return P.jailed && !(P.flags & F_KERNEL);
}

/* Always raises the epoch, even before the table exists: a first look may be under way, its
 * table made while this number changed (the table is read only after the rise). */
static inline void fd_forget(int fd)
{
	if (!coerce()) /* only the shim's own sends use the cache */
		return;
	__atomic_add_fetch(&fd_epoch, 1, __ATOMIC_SEQ_CST);
	fd_clear(__atomic_load_n(&fdcache, __ATOMIC_SEQ_CST), fd);
}

/* clone or unshare that gives memory and descriptor table different sharers (a child with
 * this memory and its own table, or the other way round): from then on the memory could
 * speak for the wrong table, so the cache is used no more, in this process or its copies. */
static void fd_cache_off(void)
{
	__atomic_store_n(&fdcache_off, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&fd_epoch, 1, __ATOMIC_SEQ_CST);
}

static void fd_forget_from(unsigned int first, unsigned int last)
{
	if (!coerce())
		return;
	__atomic_add_fetch(&fd_epoch, 1, __ATOMIC_SEQ_CST); /* once for the range */
	unsigned char *c = __atomic_load_n(&fdcache, __ATOMIC_SEQ_CST);
	int top = __atomic_load_n(&fdcache_top, __ATOMIC_SEQ_CST);
	if (!c || top < 0 || first > (unsigned int)top)
		return;
	if (last > (unsigned int)top)
		last = (unsigned int)top;
	for (unsigned int fd = first; fd <= last; fd++)
		fd_clear(c, (int)fd);
}

/* The table, made at a process's first send (before its look at the socket, so that no
 * mapping lengthens the moment between that look and the send); NULL if it cannot be. */
static unsigned char *fd_table(void)
{
	unsigned char *c = __atomic_load_n(&fdcache, __ATOMIC_SEQ_CST);
	if (c || __atomic_load_n(&fdcache_off, __ATOMIC_SEQ_CST))
		return c;
	int saved = errno;
	void *m = mmap(NULL, FDCACHE_MAX, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	/* a fork's child starts with an empty memory: the kernel copies the descriptor table
	 * before the memory, and another thread may remember a number in between */
	if (m != MAP_FAILED && madvise(m, FDCACHE_MAX, MADV_WIPEONFORK) != 0) {
		munmap(m, FDCACHE_MAX);
		m = MAP_FAILED;
		__atomic_store_n(&fdcache_off, 1, __ATOMIC_SEQ_CST); /* no kernel help: ask every time */
	}
	if (m != MAP_FAILED) {
		unsigned char *none = NULL;
		if (!__atomic_compare_exchange_n(&fdcache, &none, (unsigned char *)m, 0, __ATOMIC_SEQ_CST,
						 __ATOMIC_SEQ_CST))
			munmap(m, FDCACHE_MAX); /* another thread made it first */
	}
	errno = saved;
	return __atomic_load_n(&fdcache, __ATOMIC_SEQ_CST);
}

static void fd_remember(unsigned char *c, int fd, int family, unsigned long epoch)
{
	if (!c || fd < 0 || fd >= FDCACHE_MAX || __atomic_load_n(&fdcache_off, __ATOMIC_SEQ_CST))
		return;
	int top = __atomic_load_n(&fdcache_top, __ATOMIC_SEQ_CST); /* before the entry: a range forgetting reads it */
	while (fd > top && !__atomic_compare_exchange_n(&fdcache_top, &top, fd, 1, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		;
	__atomic_store_n(&c[fd], family == AF_INET ? FC_4 : FC_6, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&fd_epoch, __ATOMIC_SEQ_CST) != epoch)
		__atomic_store_n(&c[fd], 0, __ATOMIC_SEQ_CST); /* a forgetting overtook the look */
}

/* inspect() for a send: from the cache when the socket is known bound; remembers a bound one. */
static int inspect_send(int fd, struct fdinfo *fi)
{
	unsigned char *c = fd_table();
	if (c && fd >= 0 && fd < FDCACHE_MAX && !__atomic_load_n(&fdcache_off, __ATOMIC_RELAXED)) {
		unsigned char f = __atomic_load_n(&c[fd], __ATOMIC_RELAXED);
		if (f) {
			fi->family = f == FC_4 ? AF_INET : AF_INET6;
			fi->unbound = 0;
			return 0;
		}
	}
	unsigned long epoch = __atomic_load_n(&fd_epoch, __ATOMIC_SEQ_CST);
	if (inspect(fd, fi))
		return 1;
	if (!fi->unbound)
		fd_remember(c, fd, fi->family, epoch);
	return 0;
}

/* The descriptors an SCM_RIGHTS message brought: numbers that may have been remembered. */
static void forget_passed(const struct msghdr *m)
{
	if (!__atomic_load_n(&fdcache, __ATOMIC_ACQUIRE) || !m || !m->msg_control ||
	    m->msg_controllen < sizeof(struct cmsghdr))
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c; c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			fd_forget(fd);
		}
	}
}

/* Bounded copy of a caller's sockaddr.  Returns 0, or 1 when it is too short to judge. */
static int copy_sa(union sa *dst, const struct sockaddr *src, socklen_t len)
{
	memset(dst, 0, sizeof *dst);
	if (!src || len < (socklen_t)sizeof(sa_family_t))
		return 1;
	memcpy(dst, src, len < sizeof *dst ? len : sizeof *dst);
	if (dst->sa.sa_family == AF_INET && len < sizeof(struct sockaddr_in))
		return 1;
	if (dst->sa.sa_family == AF_INET6 && len < sizeof(struct sockaddr_in6))
		return 1;
	return 0;
}

/* Bind an unbound socket to the prison address that suits `dest` (may be NULL), port 0.
 * no_port defers the port to connect() so that ephemeral ports are not exhausted. */
static int autobind(int fd, int family, const union sa *dest, int no_port)
{
	union sa src;
	memset(&src, 0, sizeof src);
	int err;
	if (family == AF_INET) {
		src.in.sin_family = AF_INET;
		err = local4((struct in_addr){htonl(INADDR_ANY)}, &src.in.sin_addr);
		if (!err && src.in.sin_addr.s_addr == htonl(INADDR_ANY))
			src.in.sin_addr = P.ip4[0]; /* an outgoing socket needs a real source */
	} else {
		src.in6.sin6_family = AF_INET6;
		int v4dest = dest && (dest->sa.sa_family == AF_INET ||
				      (dest->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&dest->in6.sin6_addr)));
		if (v4dest) {
			if (P.n4 == 0) {
				err = EADDRNOTAVAIL;
			} else {
				err = 0;
				src.in6.sin6_addr.s6_addr[10] = 0xff;
				src.in6.sin6_addr.s6_addr[11] = 0xff;
				memcpy(&src.in6.sin6_addr.s6_addr[12], &P.ip4[0], 4);
			}
		} else if (P.n6 == 0) {
			err = EADDRNOTAVAIL;
		} else {
			err = 0;
			src.in6.sin6_addr = P.ip6[0];
		}
	}
	if (err) {
		errno = err;
		return -1;
	}
	if (no_port) {
		int one = 1;
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	}
	socklen_t len = family == AF_INET ? sizeof src.in : sizeof src.in6;
	return real.bind(fd, &src.sa, len); /* EINVAL: bound already (callers decide) */
}

/* Bring an outgoing inet socket into line before it sends to `dest` (NULL if none). */
static int prepare_out(int fd, const struct fdinfo *fi, const union sa *dest, int no_port)
{
	if (fi->unbound && autobind(fd, fi->family, dest, no_port) < 0 && errno != EINVAL)
		return -1; /* EINVAL: another thread bound it between our look and our bind */
	return 0;
}

/* ---- the socket wrappers ---- */

static int prison_socket(int domain, int type, int protocol)
{
	int base = type & 0xf; /* strip SOCK_NONBLOCK / SOCK_CLOEXEC */
	switch (domain) {
	case AF_UNIX:
		break;
	case AF_INET:
	case AF_INET6:
		/* Under the kernel layer its sock_create program decides: an IPv4-only prison's
		 * AF_INET6 TCP and UDP sockets carry IPv4 (nginx's `listen [::]:80`). */
		if (!(P.flags & F_KERNEL) && ((domain == AF_INET && P.n4 == 0) || (domain == AF_INET6 && P.n6 == 0))) {
			errno = EPROTONOSUPPORT; /* FreeBSD: no address of this family */
			return -1;
		}
		if (base == SOCK_RAW && !(P.flags & F_RAW)) {
			errno = EPERM;
			return -1;
		}
		if (base == SOCK_PACKET) { /* a link-layer socket behind an inet family: never */
			errno = EAFNOSUPPORT;
			return -1;
		}
		break;
	case AF_PACKET:
		if (!(P.flags & F_RAW)) {
			errno = EPERM;
			return -1;
		}
		break;
	case AF_NETLINK:
		if (protocol != NETLINK_ROUTE && !(P.flags & F_ANYAF)) {
			errno = EPROTONOSUPPORT;
			return -1;
		}
		break;
	default:
		if (!(P.flags & F_ANYAF)) {
			errno = EPROTONOSUPPORT;
			return -1;
		}
	}
	return real.socket(domain, type, protocol);
}

/* bind needs no look at the socket: the kernel refuses an AF_INET (AF_INET6) address on a
 * socket of any other family, so a rewrite can only turn a failing call into another failing
 * call.  The one exception is Linux's compatibility rule that takes AF_UNSPEC with INADDR_ANY
 * on an AF_INET socket as AF_INET: only then is the socket's own family asked for. */
static int prison_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	union sa want, got;
	if (copy_sa(&want, addr, len))
		return real.bind(fd, addr, len);
	int family = want.sa.sa_family;
	if (family == AF_UNSPEC) {
		struct fdinfo fi;
		if (len < sizeof(struct sockaddr_in) || want.in.sin_addr.s_addr != htonl(INADDR_ANY) ||
		    inspect(fd, &fi) || fi.family != AF_INET)
			return real.bind(fd, addr, len);
		family = AF_INET;
	}
	got = want;
	got.sa.sa_family = (sa_family_t)family;
	int err;
	if (family == AF_INET) {
		err = local4(want.in.sin_addr, &got.in.sin_addr);
	} else if (family == AF_INET6) {
		err = local6(&want.in6.sin6_addr, &got.in6.sin6_addr);
	} else {
		return real.bind(fd, addr, len);
	}
	if (err) {
		audit("refused", "bind", &want, NULL);
		errno = err;
		return -1;
	}
	if (memcmp(&want, &got, sizeof want) != 0) {
		debug_addr("bind", &want, &got);
		audit("coerced", "bind", &want, &got);
	}
	return real.bind(fd, &got.sa, family == AF_INET ? sizeof got.in : sizeof got.in6);
}

/* connect: the common case is a fresh socket, so bind first and ask questions only if that
 * fails.  Two syscalls (IP_BIND_ADDRESS_NO_PORT, bind) instead of three: on a VM a syscall is
 * about 0.5 us, a loopback connect about 40 us.  EINVAL from that bind means the socket was
 * bound already, or is an AF_INET6 socket given an IPv4 destination (UDP allows that): only
 * then is the socket itself looked at. */
static int prison_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	union sa dest;
	if (copy_sa(&dest, addr, len) || (dest.sa.sa_family != AF_INET && dest.sa.sa_family != AF_INET6))
		return real.connect(fd, addr, len); /* AF_UNSPEC disconnects; others: the kernel says */
	if (autobind(fd, dest.sa.sa_family, &dest, 1) < 0) {
		struct fdinfo fi;
		if (errno != EINVAL || inspect(fd, &fi) || (fi.unbound && autobind(fd, fi.family, &dest, 1) < 0)) {
			if (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)
				audit("refused", "connect", &dest, NULL);
			return -1;
		}
	}
	if (remote_rewrite(&dest)) {
		union sa orig;
		copy_sa(&orig, addr, len);
		debug_addr("connect", &orig, &dest);
		audit("coerced", "connect", &orig, &dest);
		return real.connect(fd, &dest.sa, len < sizeof dest ? len : sizeof dest);
	}
	return real.connect(fd, addr, len);
}

static int prison_listen(int fd, int backlog)
{
	struct fdinfo fi;
	if (inspect(fd, &fi) == 0 && fi.unbound) {
		union sa src;
		memset(&src, 0, sizeof src);
		int err;
		if (fi.family == AF_INET) {
			src.in.sin_family = AF_INET;
			err = local4((struct in_addr){htonl(INADDR_ANY)}, &src.in.sin_addr);
		} else {
			src.in6.sin6_family = AF_INET6;
			err = local6(&in6addr_any, &src.in6.sin6_addr);
		}
		if (err) {
			errno = err;
			return -1;
		}
		if (real.bind(fd, &src.sa, fi.family == AF_INET ? sizeof src.in : sizeof src.in6) < 0 &&
		    errno != EINVAL)
			return -1;
	}
	return real.listen(fd, backlog);
}

/* A source chosen by IP_PKTINFO / IPV6_PKTINFO must be a prison address. */
static int check_cmsgs(const struct msghdr *m)
{
	if (!m->msg_control || m->msg_controllen < sizeof(struct cmsghdr))
		return 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c;
	     c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			if (pi.ipi_spec_dst.s_addr != 0 && !in4_list(pi.ipi_spec_dst))
				return EADDRNOTAVAIL;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
			   c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			if (IN6_IS_ADDR_V4MAPPED(&pi.ipi6_addr)) {
				struct in_addr a4;
				memcpy(&a4, &pi.ipi6_addr.s6_addr[12], 4);
				if (a4.s_addr != 0 && !in4_list(a4))
					return EADDRNOTAVAIL;
			} else if (!IN6_IS_ADDR_UNSPECIFIED(&pi.ipi6_addr) && !in6_list(&pi.ipi6_addr)) {
				return EADDRNOTAVAIL;
			}
		}
	}
	return 0;
}

static ssize_t prison_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
			     socklen_t len)
{
	struct fdinfo fi;
	union sa dest;
	int has_dest = addr != NULL;
	if (inspect_send(fd, &fi))
		return real.sendto(fd, buf, n, flags, addr, len);
	if (has_dest && copy_sa(&dest, addr, len))
		return real.sendto(fd, buf, n, flags, addr, len);
	if (prepare_out(fd, &fi, has_dest ? &dest : NULL, (flags & MSG_FASTOPEN) != 0) < 0)
		return -1;
	if (has_dest && remote_rewrite(&dest))
		return real.sendto(fd, buf, n, flags, &dest.sa, len < sizeof dest ? len : sizeof dest);
	return real.sendto(fd, buf, n, flags, addr, len);
}

/* Judge one message: 0 if it can go as it is, 1 if its name was rewritten into *dest, or -errno. */
static int judge_msg(const struct msghdr *m, union sa *dest)
{
	int err = check_cmsgs(m);
	if (err)
		return -err;
	if (!m->msg_name || copy_sa(dest, m->msg_name, m->msg_namelen))
		return 0;
	return remote_rewrite(dest);
}

static ssize_t prison_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct fdinfo fi;
	union sa dest;
	if (!msg || inspect_send(fd, &fi))
		return real.sendmsg(fd, msg, flags);
	int has_dest = msg->msg_name && !copy_sa(&dest, msg->msg_name, msg->msg_namelen);
	if (prepare_out(fd, &fi, has_dest ? &dest : NULL, (flags & MSG_FASTOPEN) != 0) < 0)
		return -1;
	int j = judge_msg(msg, &dest);
	if (j < 0) {
		errno = -j;
		return -1;
	}
	if (j == 0)
		return real.sendmsg(fd, msg, flags);
	struct msghdr copy = *msg;
	copy.msg_name = &dest;
	copy.msg_namelen = msg->msg_namelen < sizeof dest ? msg->msg_namelen : sizeof dest;
	return real.sendmsg(fd, &copy, flags);
}

static int prison_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	struct fdinfo fi;
	if (!vec || vlen == 0 || inspect_send(fd, &fi))
		return real.sendmmsg(fd, vec, vlen, flags);
	union sa first;
	int has_dest = vec[0].msg_hdr.msg_name &&
		       !copy_sa(&first, vec[0].msg_hdr.msg_name, vec[0].msg_hdr.msg_namelen);
	if (prepare_out(fd, &fi, has_dest ? &first : NULL, (flags & MSG_FASTOPEN) != 0) < 0)
		return -1;
	/* Common case: nothing to rewrite, so the caller's vector goes as it is. */
	int rewrite = 0;
	for (unsigned int i = 0; i < vlen; i++) {
		union sa d;
		int j = judge_msg(&vec[i].msg_hdr, &d);
		if (j < 0) {
			if (i == 0) {
				errno = -j;
				return -1;
			}
			vlen = i; /* send what precedes the refused message, as the kernel would */
			break;
		}
		rewrite |= j;
	}
	if (!rewrite)
		return real.sendmmsg(fd, vec, vlen, flags);
	/* Rewrite in chunks on the stack; msg_len is copied back as the kernel would write it. */
	int total = 0;
	for (unsigned int base = 0; base < vlen; base += SENDMMSG_CHUNK) {
		struct mmsghdr chunk[SENDMMSG_CHUNK];
		union sa names[SENDMMSG_CHUNK];
		unsigned int cnt = vlen - base < SENDMMSG_CHUNK ? vlen - base : SENDMMSG_CHUNK;
		for (unsigned int i = 0; i < cnt; i++) {
			chunk[i] = vec[base + i];
			if (judge_msg(&vec[base + i].msg_hdr, &names[i]) == 1) {
				chunk[i].msg_hdr.msg_name = &names[i];
				if (chunk[i].msg_hdr.msg_namelen > sizeof names[i])
					chunk[i].msg_hdr.msg_namelen = sizeof names[i];
			}
		}
		int r = real.sendmmsg(fd, chunk, cnt, flags);
		if (r < 0)
			return total ? total : -1;
		for (int i = 0; i < r; i++)
			vec[base + (unsigned)i].msg_len = chunk[i].msg_len;
		total += r;
		if ((unsigned)r < cnt)
			break;
	}
	return total;
}

/* ---- hostname and interfaces ---- */

static int prison_gethostname(char *name, size_t len)
{
	if (P.hostlen + 1 > len) {
		if (len)
			memcpy(name, P.hostname, len);
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(name, P.hostname, P.hostlen + 1);
	return 0;
}

static int keep_ifaddr(const struct ifaddrs *a)
{
	if (!a->ifa_addr)
		return 1;
	if (a->ifa_addr->sa_family == AF_INET)
		return in4_list(((const struct sockaddr_in *)(const void *)a->ifa_addr)->sin_addr);
	if (a->ifa_addr->sa_family == AF_INET6)
		return in6_list(&((const struct sockaddr_in6 *)(const void *)a->ifa_addr)->sin6_addr);
	return 1; /* AF_PACKET: every interface is listed, as in a jail */
}

/* glibc allocates the list as one block freed through its head, so the list is compacted
 * in place: kept entries are copied, in order, into the first slots. */
static int prison_getifaddrs(struct ifaddrs **ifap)
{
	struct ifaddrs *head;
	if (real.getifaddrs(&head) < 0)
		return -1;
	struct ifaddrs *w = head, *last = NULL;
	for (struct ifaddrs *r = head; r;) {
		struct ifaddrs *next = r->ifa_next;
		if (keep_ifaddr(r)) {
			struct ifaddrs *wnext = w->ifa_next; /* w is not yet written */
			if (w != r)
				*w = *r; /* brings r's ifa_next along: relinked below */
			if (last)
				last->ifa_next = w;
			last = w;
			w = wnext;
		}
		r = next;
	}
	if (!last) {
		real.freeifaddrs(head);
		*ifap = NULL;
		return 0;
	}
	last->ifa_next = NULL;
	*ifap = head;
	return 0;
}

/* ---- exec: keep the preload and the policy even if the program cleaned its environment ---- */

static int preload_has_self(const char *value)
{
	size_t sl = strlen(P.self);
	for (const char *p = value; (p = strstr(p, P.self)) != NULL; p += sl) {
		int start_ok = p == value || p[-1] == ':' || p[-1] == ' ';
		int end_ok = p[sl] == 0 || p[sl] == ':' || p[sl] == ' ';
		if (start_ok && end_ok)
			return 1;
	}
	return 0;
}

struct envfix {
	void *map;
	size_t maplen;
};

/* Returns envp itself when it already carries both, else an mmap'd copy that does.
 * mmap, not malloc: this may run in a vfork child. */
static char *const *fix_env(char *const envp[], struct envfix *fx)
{
	fx->map = NULL;
	if (!P.jailed || !P.self || !P.env_policy[0])
		return envp;
	size_t n = 0;
	const char *old_preload = NULL;
	int policy_ok = 0;
	for (; envp && envp[n]; n++) {
		if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
			old_preload = envp[n] + 11;
		else if (strcmp(envp[n], P.env_policy) == 0)
			policy_ok = 1;
	}
	int preload_ok = old_preload && preload_has_self(old_preload);
	if (policy_ok && preload_ok)
		return envp;
	size_t strbytes = 0;
	if (!preload_ok)
		strbytes = strlen(P.env_preload) + 2 + (old_preload ? strlen(old_preload) : 0);
	fx->maplen = (n + 3) * sizeof(char *) + strbytes;
	fx->map = mmap(NULL, fx->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fx->map == MAP_FAILED) {
		fx->map = NULL;
		return envp; /* cannot fix: exec as asked rather than fail the program */
	}
	char **out = fx->map;
	char *sbuf = (char *)(out + n + 3);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(envp[i], PD_POLICY_VAR "=", sizeof PD_POLICY_VAR) == 0)
			continue;
		if (!preload_ok && strncmp(envp[i], "LD_PRELOAD=", 11) == 0)
			continue;
		out[k++] = envp[i];
	}
	out[k++] = P.env_policy;
	if (preload_ok) {
		/* kept in the loop above */
	} else {
		size_t pl = strlen(P.env_preload);
		memcpy(sbuf, P.env_preload, pl);
		if (old_preload && *old_preload) {
			sbuf[pl] = ':';
			memcpy(sbuf + pl + 1, old_preload, strlen(old_preload) + 1);
		} else {
			sbuf[pl] = 0;
		}
		out[k++] = sbuf;
	}
	out[k] = NULL;
	return out;
}

static void unfix_env(struct envfix *fx)
{
	if (fx->map) {
		int saved = errno;
		munmap(fx->map, fx->maplen);
		errno = saved;
	}
}

/* ---- exported entry points: thin ---- */

/* listen() on an unbound socket: the kernel has no hook there, so bind the wildcard and let
 * the kernel's bind hook apply the rule (one address: that address; several: the wildcard,
 * which its ingress filter guards). */
static int kernel_listen(int fd, int backlog)
{
	struct fdinfo fi;
	if (inspect(fd, &fi) == 0 && fi.unbound) {
		union sa any;
		memset(&any, 0, sizeof any);
		any.sa.sa_family = (sa_family_t)fi.family;
		if (real.bind(fd, &any.sa, fi.family == AF_INET ? sizeof any.in : sizeof any.in6) < 0 && errno != EINVAL)
			return -1;
	}
	return real.listen(fd, backlog);
}

EXPORT int socket(int domain, int type, int protocol)
{
	ensure();
	if (!real.socket) {
		errno = ENOSYS;
		return -1;
	}
	int fd = P.jailed ? prison_socket(domain, type, protocol) : real.socket(domain, type, protocol);
	fd_forget(fd);
	return fd;
}

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	ensure();
	return coerce() ? prison_bind(fd, addr, len) : real.bind(fd, addr, len);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	ensure();
	int r = coerce() ? prison_connect(fd, addr, len) : real.connect(fd, addr, len);
	fd_forget(fd); /* after: AF_UNSPEC disconnects, which may unbind what the shim did not bind */
	return r;
}

EXPORT int __connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return connect(fd, addr, len);
}

EXPORT int listen(int fd, int backlog)
{
	ensure();
	if (!P.jailed)
		return real.listen(fd, backlog);
	return (P.flags & F_KERNEL) ? kernel_listen(fd, backlog) : prison_listen(fd, backlog);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
		      socklen_t len)
{
	ensure();
	return coerce() ? prison_sendto(fd, buf, n, flags, addr, len) : real.sendto(fd, buf, n, flags, addr, len);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ensure();
	return coerce() ? prison_sendmsg(fd, msg, flags) : real.sendmsg(fd, msg, flags);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	ensure();
	return coerce() ? prison_sendmmsg(fd, vec, vlen, flags) : real.sendmmsg(fd, vec, vlen, flags);
}

/* ---- descriptors ended or given out: the bound-socket cache forgets their numbers ---- */

EXPORT int close(int fd)
{
	ensure();
	fd_forget(fd);
	return real.close(fd);
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	ensure();
	if (flags & CLOSE_RANGE_UNSHARE) /* this thread's table parts from its siblings' */
		fd_cache_off();
	fd_forget_from(first, last);
	if (!real.close_range)
		return (int)syscall(SYS_close_range, first, last, flags);
	return real.close_range(first, last, flags);
}

EXPORT void closefrom(int lowfd)
{
	ensure();
	fd_forget_from(lowfd < 0 ? 0 : (unsigned int)lowfd, UINT_MAX);
	if (real.closefrom)
		real.closefrom(lowfd);
	else
		(void)syscall(SYS_close_range, lowfd < 0 ? 0 : lowfd, UINT_MAX, 0);
}

EXPORT int dup(int old)
{
	ensure();
	int fd = real.dup(old);
	fd_forget(fd);
	return fd;
}

EXPORT int __close(int fd) __attribute__((alias("close")));

EXPORT int dup2(int old, int fd)
{
	ensure();
	int r = real.dup2(old, fd);
	fd_forget(fd); /* whatever happened: it may have been closed */
	return r;
}

EXPORT int dup3(int old, int fd, int flags)
{
	ensure();
	int r = real.dup3(old, fd, flags);
	fd_forget(fd);
	return r;
}

EXPORT int __dup2(int old, int fd)
{
	return dup2(old, fd);
}

/* The third argument is read as a pointer, as glibc's own fcntl does: an int and a pointer
 * travel in the same register on every ABI this is built for. */
static int fcntl_with(int (*f)(int, int, ...), int fd, int cmd, void *arg)
{
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	int r = f(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		fd_forget(r);
	return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	ensure();
	return fcntl_with(real.fcntl, fd, cmd, arg);
}

EXPORT int __fcntl(int fd, int cmd, ...) __attribute__((alias("fcntl")));

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	ensure();
	return fcntl_with(real.fcntl64 ? real.fcntl64 : real.fcntl, fd, cmd, arg);
}

EXPORT int pidfd_getfd(int pidfd, int target, unsigned int flags)
{
	ensure();
	int fd = real.pidfd_getfd ? real.pidfd_getfd(pidfd, target, flags)
				  : (int)syscall(SYS_pidfd_getfd, pidfd, target, flags);
	fd_forget(fd);
	return fd;
}

/* The optional arguments are passed on as they came: glibc's clone reads them from the same
 * registers and stack slots whether or not the flags ask for them. */
static int clone_with(int (*fn)(void *), void *stack, int flags, void *arg, void *ptid, void *tls, void *ctid)
{
	ensure();
	if (!(flags & CLONE_VM) != !(flags & CLONE_FILES))
		fd_cache_off();
	if (!real.clone) {
		errno = ENOSYS;
		return -1;
	}
	return real.clone(fn, stack, flags, arg, ptid, tls, ctid);
}

EXPORT int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	void *ptid = va_arg(ap, void *), *tls = va_arg(ap, void *), *ctid = va_arg(ap, void *);
	va_end(ap);
	return clone_with(fn, stack, flags, arg, ptid, tls, ctid);
}

EXPORT int __clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	void *ptid = va_arg(ap, void *), *tls = va_arg(ap, void *), *ctid = va_arg(ap, void *);
	va_end(ap);
	return clone_with(fn, stack, flags, arg, ptid, tls, ctid);
}

EXPORT int unshare(int flags)
{
	ensure();
	if (flags & CLONE_FILES) /* this thread's table parts from its siblings', not its memory */
		fd_cache_off();
	if (!real.unshare) {
		errno = ENOSYS;
		return -1;
	}
	return real.unshare(flags);
}

EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	ensure();
	int r = real.socketpair(domain, type, protocol, sv);
	if (r == 0) {
		fd_forget(sv[0]);
		fd_forget(sv[1]);
	}
	return r;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	ensure();
	int r = real.accept(fd, addr, len);
	fd_forget(r);
	return r;
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	ensure();
	int r = real.accept4(fd, addr, len, flags);
	fd_forget(r);
	return r;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ensure();
	ssize_t r = real.recvmsg(fd, msg, flags);
	if (r >= 0)
		forget_passed(msg);
	else if (errno == EFAULT) /* descriptors may have come, with no word of which */
		fd_cache_off();
	return r;
}

EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *timeout)
{
	ensure();
	int r = real.recvmmsg(fd, vec, vlen, flags, timeout);
	for (int i = 0; i < r; i++)
		forget_passed(&vec[i].msg_hdr);
	if (r < 0 && errno == EFAULT)
		fd_cache_off();
	return r;
}

EXPORT int gethostname(char *name, size_t len)
{
	ensure();
	return P.jailed ? prison_gethostname(name, len) : real.gethostname(name, len);
}

EXPORT int __gethostname_chk(char *name, size_t len, size_t buflen)
{
	ensure();
	if (!P.jailed || len > buflen)
		return real.gethostname_chk(name, len, buflen); /* the overflow abort is libc's */
	return prison_gethostname(name, len);
}

EXPORT int uname(struct utsname *buf)
{
	ensure();
	int r = real.uname(buf);
	if (r == 0 && P.jailed) {
		size_t n = P.hostlen < sizeof buf->nodename - 1 ? P.hostlen : sizeof buf->nodename - 1;
		memcpy(buf->nodename, P.hostname, n);
		buf->nodename[n] = 0;
	}
	return r;
}

EXPORT int sethostname(const char *name, size_t len)
{
	ensure();
	if (P.jailed) {
		errno = EPERM; /* the host's hostname is not the prison's to change */
		return -1;
	}
	return real.sethostname(name, len);
}

EXPORT int setdomainname(const char *name, size_t len)
{
	ensure();
	if (P.jailed) {
		errno = EPERM;
		return -1;
	}
	return real.setdomainname(name, len);
}

EXPORT int getifaddrs(struct ifaddrs **ifap)
{
	ensure();
	return P.jailed ? prison_getifaddrs(ifap) : real.getifaddrs(ifap);
}

/* Run `call` with `env` standing for envp, fixed up; undone if the exec failed and returned. */
#define WITH_FIXED_ENV(envp, call)                        \
	do {                                                  \
		ensure();                                         \
		struct envfix fx;                                 \
		char *const *env = fix_env(envp, &fx);            \
		int r_ = (call);                                  \
		unfix_env(&fx);                                   \
		return r_;                                        \
	} while (0)

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	WITH_FIXED_ENV(envp, real.execve(path, argv, env));
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	WITH_FIXED_ENV(envp, real.execvpe(file, argv, env));
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	WITH_FIXED_ENV(envp, real.fexecve(fd, argv, env));
}

/* glibc's execv, execvp and execl* call its internal execve, out of our reach: wrap them all. */
EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

/* Collect execl-style arguments into a vector on the stack (bounded like ARG_MAX would be). */
#define EXECL_MAX 4096
#define COLLECT_ARGS(arg0, ap, argv, argc)                                  \
	do {                                                                    \
		argv[0] = (char *)(arg0);                                           \
		argc = 1;                                                           \
		while (argv[argc - 1] != NULL) {                                    \
			if (argc >= EXECL_MAX) {                                        \
				va_end(ap);                                                 \
				errno = E2BIG;                                              \
				return -1;                                                  \
			}                                                               \
			argv[argc++] = va_arg(ap, char *);                              \
		}                                                                   \
	} while (0)

EXPORT int execl(const char *path, const char *arg, ...)
{
	char *argv[EXECL_MAX];
	size_t argc;
	va_list ap;
	va_start(ap, arg);
	COLLECT_ARGS(arg, ap, argv, argc);
	va_end(ap);
	return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	char *argv[EXECL_MAX];
	size_t argc;
	va_list ap;
	va_start(ap, arg);
	COLLECT_ARGS(arg, ap, argv, argc);
	va_end(ap);
	return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	char *argv[EXECL_MAX];
	size_t argc;
	va_list ap;
	va_start(ap, arg);
	COLLECT_ARGS(arg, ap, argv, argc);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	WITH_FIXED_ENV(envp, real.posix_spawn(pid, path, fa, attr, argv, env));
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	WITH_FIXED_ENV(envp, real.posix_spawnp(pid, file, fa, attr, argv, env));
}

/* ---- /proc/<pid>/status with the prison's lines, served by the daemon ----
 *
 * Reading /proc/self/status, /proc/thread-self/status or /proc/<pid>/status (an absolute
 * path, for reading) returns the kernel's text followed by what the daemon says of that
 * process: "Prison:", "JID:" and "Hostname:" lines.  A process the daemon says is not this
 * prison's reads as missing (ENOENT).  If the daemon cannot be asked, the kernel's text is
 * returned as it is.  The result is a sealed memfd reopened read-only.
 */

#define STATUS_MAX 16384
#define REPLY_MAX PD_FLAT_MAX

/* The pid a status path names (self: ours), or 0 when it is not one. */
static pid_t status_path(const char *path)
{
	if (!path || strncmp(path, "/proc/", 6) != 0)
		return 0;
	const char *p = path + 6;
	pid_t pid = 0;
	if (strncmp(p, "self/", 5) == 0) {
		pid = getpid();
		p += 5;
	} else if (strncmp(p, "thread-self/", 12) == 0) {
		pid = getpid();
		p += 12;
	} else {
		while (*p >= '0' && *p <= '9' && pid < 4194304)
			pid = pid * 10 + (*p++ - '0');
		if (pid == 0 || *p++ != '/')
			return 0;
	}
	return strcmp(p, "status") == 0 ? pid : 0;
}

/* A flat reply (prisond/model/contract.py): "ok TEXT\n" with TEXT's backslash, newline and
 * tab escaped -> 1 and the text in out; "err no_such_process\n" -> 0; anything else -> -1. */
static int flat_reply(const char *reply, char *out, size_t cap)
{
	if (!strcmp(reply, "err no_such_process\n"))
		return 0;
	if (strncmp(reply, "ok ", 3) != 0)
		return -1;
	size_t o = 0;
	for (const char *t = reply + 3; *t != '\n'; t++) {
		char c = *t;
		if (!c || o + 1 >= cap)
			return -1;
		if (c == '\\') {
			c = *++t;
			if (c != 'n' && c != 't' && c != '\\')
				return -1;
			c = c == 'n' ? '\n' : c == 't' ? '\t' : '\\';
		}
		out[o++] = c;
	}
	out[o] = 0;
	return 1;
}

/* The question for pid's status, in the flat form's request (a JSON line with "flat":true). */
static int status_request(char *req, size_t cap, pid_t pid)
{
	return snprintf(req, cap, "{\"v\":" PD_STR(PD_PROTOCOL_VERSION) ",\"id\":1,\"method\":\"proc.status\",\"params\":{\"pid\":%d},\"flat\":true}\n",
			(int)pid);
}

/* Asks the daemon; 1: lines in out, 0: not this prison's process, -1: no answer. */
static int ask_status(pid_t pid, char *out, size_t cap)
{
	if (!P.sock[0])
		return -1;
	int fd = real.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	memcpy(un.sun_path, P.sock, strlen(P.sock) + 1);
	char req[128], reply[REPLY_MAX];
	int n = status_request(req, sizeof req, pid);
	size_t got = 0;
	int rc = -1;
	if (real.connect(fd, (struct sockaddr *)&un, sizeof un) < 0 || write(fd, req, n) != n)
		goto out;
	while (got < sizeof reply - 1) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 2000) <= 0)
			goto out;
		ssize_t r = read(fd, reply + got, sizeof reply - 1 - got);
		if (r <= 0)
			goto out;
		got += (size_t)r;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = 0;
	rc = flat_reply(reply, out, cap);
out:
	close(fd);
	return rc;
}

static int virtual_status(const char *path, int flags, pid_t pid)
{
	int saved = errno;
	int kfd = real.open(path, O_RDONLY | O_CLOEXEC);
	if (kfd < 0)
		return -1;
	char buf[STATUS_MAX + REPLY_MAX];
	size_t n = 0;
	ssize_t r;
	while (n < STATUS_MAX && (r = read(kfd, buf + n, STATUS_MAX - n)) > 0)
		n += (size_t)r;
	close(kfd);
	int ans = ask_status(pid, buf + n, REPLY_MAX);
	if (ans == 0) {
		errno = ENOENT;
		return -1;
	}
	if (ans == 1)
		n += strlen(buf + n);
	int mfd = memfd_create("status", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0)
		return real.open(path, flags); /* no memfd: the kernel's file as it is */
	if (write(mfd, buf, n) != (ssize_t)n) {
		close(mfd);
		return real.open(path, flags);
	}
	fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", mfd);
	int fd = real.open(self, O_RDONLY | (flags & O_CLOEXEC));
	close(mfd);
	if (fd >= 0)
		errno = saved;
	return fd;
}

static inline pid_t wants_status(const char *path, int flags)
{
	return P.jailed && (flags & O_ACCMODE) == O_RDONLY && path && path[0] == '/' && path[1] == 'p'
		       ? status_path(path) : 0;
}

#define OPEN_MODE(flags, mode)                              \
	mode_t mode = 0;                                        \
	if ((flags) & (O_CREAT | __O_TMPFILE)) {                \
		va_list ap_;                                        \
		va_start(ap_, flags);                               \
		mode = va_arg(ap_, mode_t);                         \
		va_end(ap_);                                        \
	}

EXPORT int open(const char *path, int flags, ...)
{
	OPEN_MODE(flags, mode);
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.open(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	OPEN_MODE(flags, mode);
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.open64(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags, mode);
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags, mode);
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.openat64(dirfd, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.open_2(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.open64_2(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.openat_2(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	ensure();
	pid_t pid = wants_status(path, flags);
	return pid ? virtual_status(path, flags, pid) : real.openat64_2(dirfd, path, flags);
}

static FILE *status_fopen(const char *path, const char *mode, FILE *(*real_fopen)(const char *, const char *))
{
	pid_t pid = P.jailed && mode && mode[0] == 'r' && !strchr(mode, '+') ? status_path(path) : 0;
	if (!pid)
		return real_fopen(path, mode);
	int fd = virtual_status(path, strchr(mode, 'e') ? O_CLOEXEC : 0, pid);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	ensure();
	return status_fopen(path, mode, real.fopen);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	ensure();
	return status_fopen(path, mode, real.fopen64);
}
