/* tenant: what a hostile tenant (a prison's process, root or not) tries against the daemon,
 * the operator's terminal, other prisons and the host.  Built static (no shim in the way).
 * One attempt per run; prints "ok" / "err ERRNO_NAME" or the figures named below.
 *
 * The daemon's control socket is the one PRISOND_POLICY's s= field names (what the shim uses);
 * its events socket is events.sock beside it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"


static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The control socket's path, from PRISOND_POLICY's s= field. */
static const char *control_path(void)
{
	static char path[108];
	const char *pol = getenv("PRISOND_POLICY");
	if (!pol) {
		fprintf(stderr, "tenant: no PRISOND_POLICY\n");
		exit(3);
	}
	for (const char *p = pol; p && *p; p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL) {
		if (!strncmp(p, "s=", 2)) {
			size_t n = strcspn(p + 2, ";");
			if (n >= sizeof path)
				n = sizeof path - 1;
			memcpy(path, p + 2, n);
			path[n] = 0;
			return path;
		}
	}
	fprintf(stderr, "tenant: PRISOND_POLICY has no s= field: %s\n", pol);
	exit(3);
}

static void events_path(char *out, size_t cap)
{
	const char *c = control_path();
	const char *slash = strrchr(c, '/');
	snprintf(out, cap, "%.*s/events.sock", (int)(slash ? slash - c : 0), c);
}

static int unix_connect(const char *path, int abstract)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t len;
	if (abstract) {
		size_t n = strlen(path);
		if (n > sizeof a.sun_path - 1)
			n = sizeof a.sun_path - 1;
		memcpy(a.sun_path + 1, path, n);
		len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
	} else {
		snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
		len = sizeof a;
	}
	if (connect(fd, (struct sockaddr *)&a, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* One reply line (without the newline) into buf, waiting at most ms; 0 on success. */
static int read_line(int fd, char *buf, size_t cap, int ms)
{
	size_t n = 0;
	double end = now() + ms / 1000.0;
	while (n + 1 < cap) {
		int left = (int)((end - now()) * 1000);
		if (left <= 0)
			return -1;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = 0;
			return 0;
		}
		n++;
	}
	buf[n] = 0;
	return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= w;
	}
	return 0;
}

/* Keep the daemon busy for a moment: a long pipeline of (allowed) health requests. */
static int busy_daemon(void)
{
	int fd = unix_connect(control_path(), 0);
	if (fd < 0)
		return -1;
	static char burst[200 * 1024];
	static size_t len;
	if (!len) {
		const char *req = "{\"v\":1,\"id\":0,\"method\":\"daemon.health\",\"params\":{}}\n";
		size_t rl = strlen(req);
		while (len + rl < sizeof burst) {
			memcpy(burst + len, req, rl);
			len += rl;
		}
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, burst + off, len - off);
		if (w <= 0)
			break;
		off += w;
	}
	return fd;
}


/* A connection made by a child that is gone (exited and reaped) when the request is sent on
 * it: the parent made the socket, the child connected it (so the kernel's peer credentials
 * are the child's) and exited; the parent, which shares the socket, asks.  The daemon must
 * not take such a caller for someone outside every prison.  Retried (a new connection each
 * time) while the answer is permission_denied, TRIES times at most, each time after keeping
 * the daemon busy for a moment (so that it looks at the connection only once the child is
 * gone); prints the number of tries and the last reply. */
static int call_orphan(const char *request, int tries)
{
	static char reply[1 << 20];
	int t;
	for (t = 1; t <= tries; t++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return report(-1);
		int busy = busy_daemon();
		pid_t pid = fork();
		if (pid < 0)
			return report(-1);
		if (pid == 0) {
			struct sockaddr_un a = {.sun_family = AF_UNIX};
			snprintf(a.sun_path, sizeof a.sun_path, "%s", control_path());
			_exit(connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ? 1 : 0);
		}
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			printf("tries %d\nconnect failed\n", t);
			return 1;
		}
		/* the child is reaped: its pid is free; the connection is ours */
		if (write_all(fd, request, strlen(request)) < 0 || write_all(fd, "\n", 1) < 0 ||
		    read_line(fd, reply, sizeof reply, 20000) < 0)
			snprintf(reply, sizeof reply, "no reply (%s)", strerrorname_np(errno));
		close(fd);
		if (busy >= 0)
			close(busy);
		if (!strstr(reply, "\"permission_denied\""))
			break;
	}
	printf("tries %d\n%s\n", t > tries ? tries : t, reply);
	return 0;
}

/* A plain request on a connection of our own. */
static int call(const char *request)
{
	static char reply[1 << 20];
	int fd = unix_connect(control_path(), 0);
	if (fd < 0)
		return report(-1);
	if (write_all(fd, request, strlen(request)) < 0 || write_all(fd, "\n", 1) < 0 ||
	    read_line(fd, reply, sizeof reply, 20000) < 0)
		snprintf(reply, sizeof reply, "no reply (%s)", strerrorname_np(errno));
	printf("%s\n", reply);
	return 0;
}

/* "\n" in an argument is a newline (so a shell can pass one). */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] == 'n') {
			*o++ = '\n';
			s++;
		} else
			*o++ = *s;
	}
	*o = 0;
}

/* Push TEXT into the terminal's input queue, as if the operator had typed it. */
static int tiocsti(char *text)
{
	unescape(text);
	int ok = 1;
	for (char *c = text; *c; c++)
		if (ioctl(0, TIOCSTI, c) < 0) {
			printf("fd0 err %s\n", strerrorname_np(errno));
			ok = 0;
			break;
		}
	if (ok) {
		printf("fd0 ok\n");
		return 0;
	}
	int t = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (t < 0) {
		printf("tty err %s\n", strerrorname_np(errno));
		return 1;
	}
	for (char *c = text; *c; c++)
		if (ioctl(t, TIOCSTI, c) < 0) {
			printf("tty err %s\n", strerrorname_np(errno));
			return 1;
		}
	printf("tty ok\n");
	return 0;
}

/* Leave a process behind that, after WAIT_MS, makes itself the terminal's foreground process
 * group (again and again) and records in FILE whatever it reads from the terminal for
 * SECONDS. */
static int steal_tty(const char *file, int wait_ms, int seconds)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return report(-1);
	if (pid > 0) {
		printf("left %d behind\n", (int)pid);
		return 0;
	}
	signal(SIGTTOU, SIG_IGN);
	signal(SIGTTIN, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	int out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0666);
	if (out < 0)
		_exit(1);
	usleep(wait_ms * 1000);
	int fd = 0;
	if (!isatty(0)) {
		fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			dprintf(out, "no terminal: %s\n", strerrorname_np(errno));
			_exit(0);
		}
	}
	/* a group of its own (in a PID namespace, the group it was in may have no number there) */
	if (setpgid(0, 0) < 0)
		dprintf(out, "setpgid err %s\n", strerrorname_np(errno));
	if (tcsetpgrp(fd, getpgrp()) < 0)
		dprintf(out, "tcsetpgrp err %s\n", strerrorname_np(errno));
	else
		dprintf(out, "tcsetpgrp ok\n");
	double end = now() + seconds;
	int last_err = 0;
	while (now() < end) {
		tcsetpgrp(fd, getpgrp());
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		char buf[512];
		ssize_t n = read(fd, buf, sizeof buf);
		if (n > 0) {
			dprintf(out, "read: %.*s\n", (int)n, buf);
		} else if (n < 0 && errno != last_err) {
			last_err = errno;
			dprintf(out, "read err %s\n", strerrorname_np(errno));
		} else if (n == 0 && last_err != -1) {
			last_err = -1;
			dprintf(out, "read EOF\n");
		}
		if (n <= 0)
			usleep(20 * 1000);
	}
	dprintf(out, "end\n");
	_exit(0);
}

static int abstract_listen(const char *name, int seconds)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	if (n > sizeof a.sun_path - 1)
		n = sizeof a.sun_path - 1;
	memcpy(a.sun_path + 1, name, n);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + n) < 0 ||
	    listen(fd, 16) < 0)
		return report(-1);
	printf("listening\n");
	fflush(stdout);
	int accepted = 0;
	double end = now() + seconds;
	while (now() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		if (write(c, "hello\n", 6) < 0) {
		}
		close(c);
		accepted++;
	}
	printf("accepted %d\n", accepted);
	return 0;
}

static int abstract_connect(const char *name)
{
	int fd = unix_connect(name, 1);
	if (fd < 0)
		return report(-1);
	char line[64];
	if (read_line(fd, line, sizeof line, 2000) < 0)
		strcpy(line, "(nothing)");
	printf("ok %s\n", line);
	return 0;
}

static int read_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return report(-1);
	static char buf[65536];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n < 0)
		return report(-1);
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' ';
	buf[n] = 0;
	printf("ok %s\n", buf);
	return 0;
}

static int do_ptrace(pid_t pid)
{
	if (ptrace(PTRACE_ATTACH, pid, 0, 0) < 0)
		return report(-1);
	waitpid(pid, NULL, __WALL);
	ptrace(PTRACE_DETACH, pid, 0, 0);
	return report(0);
}

static void raise_nofile(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

/* N connections to the control socket, held open for SECONDS. */
static int hold_conns(int n, int seconds)
{
	raise_nofile();
	int *fds = calloc(n, sizeof *fds);
	int opened = 0, failed = 0, last = 0;
	for (int i = 0; i < n; i++) {
		fds[i] = unix_connect(control_path(), 0);
		if (fds[i] < 0) {
			failed++;
			last = errno;
		} else
			opened++;
	}
	usleep(500 * 1000);
	int alive = 0;
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		struct pollfd p = {.fd = fds[i], .events = POLLIN | POLLRDHUP};
		if (poll(&p, 1, 0) == 0)
			alive++;
	}
	printf("opened %d failed %d (%s) alive %d\n", opened, failed, last ? strerrorname_np(last) : "-", alive);
	fflush(stdout);
	sleep(seconds);
	return 0;
}

/* CONNS connections asking proc.status about PID as fast as the daemon answers, for SECONDS;
 * prints how many answers came. */
static int status_flood(int conns, int seconds, int pid)
{
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	char req[160];
	int rl = snprintf(req, sizeof req, "{\"v\":1,\"id\":1,\"method\":\"proc.status\",\"params\":{\"pid\":%d}}\n", pid);
	static char batch[64 * 160];
	size_t bl = 0;
	while (bl + (size_t)rl < sizeof batch) {
		memcpy(batch + bl, req, (size_t)rl);
		bl += (size_t)rl;
	}
	int *fds = calloc(conns, sizeof *fds);
	for (int i = 0; i < conns; i++) {
		fds[i] = unix_connect(control_path(), 0);
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
	}
	printf("flooding\n");
	fflush(stdout);
	long answers = 0;
	double end = now() + seconds;
	char buf[65536];
	while (now() < end) {
		for (int i = 0; i < conns; i++) {
			if (fds[i] < 0)
				continue;
			if (write(fds[i], batch, bl) < 0 && errno != EAGAIN) {
				close(fds[i]);
				fds[i] = -1;
				continue;
			}
			ssize_t n;
			while ((n = read(fds[i], buf, sizeof buf)) > 0)
				for (ssize_t k = 0; k < n; k++)
					answers += buf[k] == '\n';
		}
		usleep(1000);
	}
	printf("answers %ld\n", answers);
	return 0;
}

/* CONNS connections, each sending BYTES of health requests and reading no reply; held for
 * SECONDS. */
static int pipeline(int conns, long bytes, int seconds, int tiny)
{
	raise_nofile();
	signal(SIGPIPE, SIG_IGN); /* a connection the daemon refuses or drops is not the attacker's end */
	static char chunk[64 * 1024];
	size_t len = 0;
	const char *req = tiny ? "{}\n" : "{\"v\":1,\"id\":1,\"method\":\"daemon.health\",\"params\":{}}\n";
	size_t rl = strlen(req);
	while (len + rl < sizeof chunk) {
		memcpy(chunk + len, req, rl);
		len += rl;
	}
	int *fds = calloc(conns, sizeof *fds);
	long *sent = calloc(conns, sizeof *sent);
	int opened = 0;
	for (int i = 0; i < conns; i++) {
		fds[i] = unix_connect(control_path(), 0);
		if (fds[i] >= 0) {
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
			opened++;
		}
	}
	double idle_since = now();
	long total = 0;
	for (;;) {
		int progress = 0, pending = 0;
		for (int i = 0; i < conns; i++) {
			if (fds[i] < 0 || sent[i] >= bytes)
				continue;
			pending = 1;
			size_t off = sent[i] % len, want = len - off;
			if ((long)want > bytes - sent[i])
				want = bytes - sent[i];
			ssize_t w = write(fds[i], chunk + off, want);
			if (w > 0) {
				sent[i] += w;
				total += w;
				progress = 1;
			}
		}
		if (!pending)
			break;
		if (progress)
			idle_since = now();
		else if (now() - idle_since > 2.0)
			break;
		else
			usleep(2000);
	}
	printf("connections %d sent %ld bytes\n", opened, total);
	fflush(stdout);
	sleep(seconds);
	return 0;
}

/* Datagrams to events.sock as fast as possible for SECONDS. */
static int flood_events(int seconds, const char *text)
{
	char path[108];
	events_path(path, sizeof path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	long sent = 0, again = 0, other = 0;
	int last = 0;
	/* blocking sends (the daemon's queue is the limit), each waiting at most 50 ms */
	struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	double end = now() + seconds;
	while (now() < end)
		for (int i = 0; i < 64; i++) {
			if (sendto(fd, text, strlen(text), 0, (struct sockaddr *)&a, sizeof a) >= 0)
				sent++;
			else if (errno == EAGAIN)
				again++;
			else {
				other++;
				last = errno;
			}
		}
	printf("sent %ld eagain %ld errors %ld (%s)\n", sent, again, other, last ? strerrorname_np(last) : "-");
	return 0;
}

static int send_event(const char *text)
{
	char path[108];
	events_path(path, sizeof path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	return report(sendto(fd, text, strlen(text), 0, (struct sockaddr *)&a, sizeof a));
}

/* N descriptors open (dups of /dev/null) in each of PROCS processes, held for SECONDS; prints
 * the total once all have them. */
static int open_fds(int n, int seconds, int procs)
{
	raise_nofile();
	struct rlimit r;
	getrlimit(RLIMIT_NOFILE, &r);
	int p[2];
	if (pipe(p) < 0)
		return report(-1);
	for (int k = 0; k < procs; k++) {
		pid_t pid = k == procs - 1 ? 0 : fork();
		if (pid < 0)
			return report(-1);
		if (pid > 0)
			continue;
		int base = open("/dev/null", O_RDONLY);
		int opened = base < 0 ? 0 : 1;
		while (base >= 0 && opened < n && dup(base) >= 0)
			opened++;
		if (k < procs - 1) { /* a child: report, then hold */
			if (write(p[1], &opened, sizeof opened) < 0)
				_exit(1);
			sleep(seconds);
			_exit(0);
		}
		long total = opened;
		for (int c = 0; c < procs - 1; c++) {
			int got = 0;
			if (read(p[0], &got, sizeof got) == sizeof got)
				total += got;
		}
		printf("opened %ld in %d processes (limit %ld)\n", total, procs, (long)r.rlim_cur);
		fflush(stdout);
		sleep(seconds);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: tenant ATTEMPT [ARGS]\n");
		return 2;
	}
	const char *a = argv[1];
	char *arg = argc > 2 ? argv[2] : "";
	const char *arg3 = argc > 3 ? argv[3] : "";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(a, "call-orphan"))
		return call_orphan(arg, argc > 3 ? atoi(arg3) : 20);
	if (!strcmp(a, "call"))
		return call(arg);
	if (!strcmp(a, "tiocsti"))
		return tiocsti(arg);
	if (!strcmp(a, "steal-tty"))
		return steal_tty(arg, atoi(arg3), argc > 4 ? atoi(argv[4]) : 5);
	if (!strcmp(a, "sock-packet"))
		return report(socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)));
	if (!strcmp(a, "abstract-listen"))
		return abstract_listen(arg, atoi(arg3));
	if (!strcmp(a, "abstract-connect"))
		return abstract_connect(arg);
	if (!strcmp(a, "read-file"))
		return read_file(arg);
	if (!strcmp(a, "prlimit")) { /* another process's CPU limit: 1 second, which kills it */
		struct rlimit cpu = {.rlim_cur = 1, .rlim_max = RLIM_INFINITY};
		return report(prlimit(atoi(arg), RLIMIT_CPU, &cpu, NULL));
	}
	if (!strcmp(a, "renice-user")) /* every process of a uid, the host's included */
		return report(setpriority(PRIO_USER, atoi(arg), 19));
	if (!strcmp(a, "kill"))
		return report(kill(atoi(arg), atoi(arg3)));
	if (!strcmp(a, "ptrace"))
		return do_ptrace(atoi(arg));
	if (!strcmp(a, "sleep-argv")) { /* argv (and its name) are what the test gave */
		if (argc > 3)
			prctl(PR_SET_NAME, argv[3], 0, 0, 0);
		sleep(atoi(arg));
		return 0;
	}
	if (!strcmp(a, "status-flood"))
		return status_flood(atoi(arg), atoi(arg3), argc > 4 ? atoi(argv[4]) : 1);
	if (!strcmp(a, "hold-conns"))
		return hold_conns(atoi(arg), atoi(arg3));
	if (!strcmp(a, "pipeline"))
		return pipeline(atoi(arg), atol(arg3), argc > 4 ? atoi(argv[4]) : 10, 0);
	if (!strcmp(a, "pipeline-tiny")) /* the most lines per byte: "{}" */
		return pipeline(atoi(arg), atol(arg3), argc > 4 ? atoi(argv[4]) : 10, 1);
	if (!strcmp(a, "flood-events"))
		return flood_events(atoi(arg), arg3);
	if (!strcmp(a, "send-event"))
		return send_event(arg);
	if (!strcmp(a, "open-fds"))
		return open_fds(atoi(arg), atoi(arg3), argc > 4 ? atoi(argv[4]) : 1);
	fprintf(stderr, "tenant: unknown attempt %s\n", a);
	return 2;
}
