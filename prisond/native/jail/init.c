/* `prisonjail init`: a prison's first process, and from then on the only way into it.
 *
 *   prisonjail init --control FD --hostname NAME [--cgroup PROCS ...] [--ipc]
 *                   [--root DIR | --isolate] [MOUNT ...] [--hosts FILE] [--rundir NAME ... [--rundir-user USER]]
 *                   [--allow FLAGS] [--landlock-abi N]
 *       MOUNT: --tmpfs DST | --bind SRC DST ro|rw      (DST inside the root, in order)
 *
 * The daemon starts it with FD a listening SOCK_SEQPACKET unix socket (bound in a directory
 * only root can reach).  It joins the prison's cgroups (each PROCS a cgroup.procs file),
 * makes the prison's UTS namespace (the hostname, which static binaries see too) and, with
 * --ipc, its own System V IPC namespace, and forks the prison's init, which holds them for
 * as long as the prison lives:
 *   - confined (--root): PID 1 of a new PID namespace, in a new mount namespace, with the
 *     root, /proc, /dev and mounts of confine.c, the bounding set of a jail's root and the
 *     full seccomp filter;
 *   - isolated (--isolate): PID 1 of a new PID namespace, in a new mount namespace showing
 *     the host's tree with a /proc of its own and private /run, /tmp, /var/tmp, /dev/shm
 *     (confine.c's isolate()), with the terminal and socket rules of the seccomp filter;
 *   - otherwise: a plain process that becomes the subreaper of everything it starts, with
 *     the terminal and socket rules of the seccomp filter.
 * Either of the first two may have --hosts (bound read-only on /etc/hosts) and --rundir
 * (directories made in its private /run, 0755, USER's of the prison's /etc/passwd).
 * Either way it enters a Landlock domain, so that every process of the prison shares it, and
 * drops being dumpable.  The outer process prints init's host pid once it is ready, or one
 * line saying what failed, and exits.
 *
 * Then init serves the daemon: one connection at a time, root only, from outside the prison.
 *   hello (+ a descriptor of the daemon's PID namespace, /proc/self/ns/pid: a connection's
 *         first packet, or init closes it)
 *                      -> hello, with init's own pidfd, live=ID (+ a pidfd each) for the
 *                         processes it started and that still run, exited=ID:STATUS for those
 *                         that ended while no daemon was there to hear it
 *   spawn id= arg=... env=... [user= cwd= login=1 nofile= tty=1 rows= cols= stdio=fds|log|null
 *         lifeline=1]
 *                      -> spawned id= (+ its pidfd, and with tty=1 the terminal's master)
 *                      -> error id= stage= errno=
 *   signal id= sig=    (no answer: init signals the process it started, never a reused pid)
 *   sync               -> sync (every exit reaped before it was asked is told before it)
 *   (later)            -> exit id= status=       (a wait status)
 *                      -> log stream=out|err dropped=N, then the bytes (the last record's value
 *                         runs to the end of the packet: output is not text)
 * With lifeline=1 the request's last descriptor is the read end of a pipe whose write end the
 * client holds (prisonctl exec): when the client goes, however it goes and whatever became of
 * the daemon, the process's group gets SIGHUP and SIGCONT, as when a terminal hangs up.
 * A child's stdio is three descriptors sent with the request (stdio=fds), the prison's log
 * pipes (stdio=log), or /dev/null.  init reads the log pipes itself and passes what comes on
 * as it comes, never blocking: a service never waits on its output, and while no daemon
 * listens the output is counted as dropped (the daemon holds one descriptor per prison).
 * The pidfds init hands out are for the daemon to learn the pids: it does not keep them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "jail.h"

#define MAX_MOUNTS 64
#define MAX_RUNDIRS 16 /* config.py: runtime_directory holds at most as many */
#define MAX_KIDS 256
#define LOG_PIPE_SIZE (1 << 20)

static int report_fd = -1; /* to the outer process: one line of failure, or EOF when ready */

void fail(const char *what, const char *path)
{
	char buf[PATH_MAX + 256];
	int n = snprintf(buf, sizeof buf, "%s%s%s: %s\n", what, path ? " " : "", path ? path : "", strerror(errno));
	if (report_fd < 0 || write(report_fd, buf, n > 0 ? (size_t)n : 0) < 0)
		fprintf(stderr, "%s: %s", prog, buf);
	_exit(1);
}

static void join_cgroup(const char *procs)
{
	int fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		die(procs);
	close(fd);
}

/* The prison is no one's login session: the audit login uid of whoever started the daemon
 * (an operator's ssh session) is unset, as for a service systemd starts.  Otherwise a login
 * manager inside (sshd's pam_loginuid, `session required`) fails to set its own: a confined
 * root has no CAP_AUDIT_CONTROL, and only an unset login uid may be set without it.  A kernel
 * without audit, or a login uid made immutable, keeps what it has. */
static void forget_login(void)
{
	int fd = open("/proc/self/loginuid", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "4294967295", 10) < 0) { /* best effort, as above */
		}
		close(fd);
	}
}

/* What `ps` shows for init: no host paths. */
static void rename_self(char **argv, int argc)
{
	char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
	memset(start, 0, (size_t)(end - start));
	strcpy(start, "init");
	prctl(PR_SET_NAME, "init", 0, 0, 0);
}

/* ------------------------------------------------------------------ the children */

struct kid {
	char id[48];
	pid_t pid;    /* as init sees it */
	int lifeline; /* see the header; -1: none */
	int done;     /* exited; status not yet told to a daemon */
	int status;
};

static struct kid kids[MAX_KIDS];
static int conn = -1;           /* the daemon */
static int log_out[2], log_err[2];
static unsigned long dropped[2]; /* log bytes no daemon took, by stream */
static int null_fd = -1;

static struct kid *kid_by_id(const char *id)
{
	for (int i = 0; i < MAX_KIDS; i++)
		if (kids[i].pid && !strcmp(kids[i].id, id))
			return &kids[i];
	return NULL;
}

static void forget(struct kid *k)
{
	if (k->lifeline > 0)
		close(k->lifeline);
	memset(k, 0, sizeof *k);
}

/* The client at the other end of a lifeline is gone: hang its process up. */
static void hang_up(struct kid *k)
{
	close(k->lifeline);
	k->lifeline = 0;
	if (!k->done) {
		kill(-k->pid, SIGHUP);
		kill(-k->pid, SIGCONT);
	}
}

static void tell_exit(struct kid *k)
{
	struct msg *m = malloc(sizeof *m);
	if (!m)
		return;
	msg_init(m, "exit");
	msg_add(m, "id", k->id);
	msg_addf(m, "status", "%d", k->status);
	/* never block on the daemon: if it does not take it now, the next hello will */
	if (conn >= 0 && msg_send(conn, m, MSG_DONTWAIT) == 0)
		forget(k);
	free(m);
}

static void reap(int sfd)
{
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof si) == sizeof si)
		;
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (int i = 0; i < MAX_KIDS; i++)
			if (kids[i].pid == pid && !kids[i].done) {
				kids[i].done = 1;
				kids[i].status = status;
				if (kids[i].lifeline > 0) {
					close(kids[i].lifeline);
					kids[i].lifeline = 0;
				}
				tell_exit(&kids[i]);
			}
}

static void reply_error(const char *id, int stage, int err)
{
	struct msg *m = malloc(sizeof *m);
	if (!m)
		return;
	msg_init(m, "error");
	msg_add(m, "id", id ? id : "");
	msg_addf(m, "stage", "%d", stage);
	msg_addf(m, "errno", "%d", err);
	msg_send(conn, m, MSG_DONTWAIT);
	free(m);
}

static int parse_spawn(const struct msg *m, struct spawn *s)
{
	memset(s, 0, sizeof *s);
	s->stdio = 2;
	size_t pos = 0, klen;
	const char *k, *v;
	while (msg_next(m, &pos, &k, &klen, &v)) {
#define IS(name) (klen == sizeof name - 1 && !memcmp(k, name, klen))
		if (IS("id"))
			s->id = v;
		else if (IS("arg") && s->argc < MAX_ARGS)
			s->argv[s->argc++] = (char *)v;
		else if (IS("env") && s->envc < MAX_ENV - 8) /* room for what spawn_child sets */
			s->envp[s->envc++] = (char *)v;
		else if (IS("user"))
			s->user = v;
		else if (IS("cwd"))
			s->cwd = v;
		else if (IS("login"))
			s->login = !strcmp(v, "1");
		else if (IS("identity"))
			s->identity = !strcmp(v, "1");
		else if (IS("nofile"))
			s->nofile = strtol(v, NULL, 10);
		else if (IS("tty"))
			s->tty = !strcmp(v, "1");
		else if (IS("rows"))
			s->rows = (unsigned short)strtoul(v, NULL, 10);
		else if (IS("cols"))
			s->cols = (unsigned short)strtoul(v, NULL, 10);
		else if (IS("stdio"))
			s->stdio = !strcmp(v, "fds") ? 0 : !strcmp(v, "log") ? 1 : 2;
		else if (IS("lifeline"))
			s->lifeline = !strcmp(v, "1");
#undef IS
	}
	s->argv[s->argc] = NULL;
	s->envp[s->envc] = NULL;
	if (!s->id || !*s->id || strlen(s->id) >= sizeof kids[0].id)
		return -1;
	int want = (!s->tty && s->stdio == 0 ? 3 : 0) + s->lifeline;
	return m->nfds == want ? 0 : -1;
}

/* A new pseudo-terminal of this prison (its own devpts when confined): master and slave. */
static int open_pty(const struct spawn *s, int *master, int *slave)
{
	*master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	int unlock = 0;
	if (ioctl(*master, TIOCSPTLCK, &unlock) < 0)
		return -1;
	*slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		return -1;
	if (s->rows && s->cols) {
		struct winsize ws = {.ws_row = s->rows, .ws_col = s->cols};
		ioctl(*master, TIOCSWINSZ, &ws);
	}
	return 0;
}

static void do_spawn(struct msg *m)
{
	static struct spawn s;
	int master = -1, slave = -1, in, out, err;
	if (parse_spawn(m, &s) < 0) {
		reply_error(msg_get(m, "id"), 0, EINVAL);
		return;
	}
	struct kid *k = NULL;
	for (int i = 0; i < MAX_KIDS && !k; i++)
		if (!kids[i].pid)
			k = &kids[i];
	if (!k || kid_by_id(s.id)) {
		reply_error(s.id, 0, k ? EEXIST : EAGAIN);
		return;
	}
	if (s.tty) {
		if (open_pty(&s, &master, &slave) < 0) {
			int e = errno;
			if (master >= 0)
				close(master);
			reply_error(s.id, STAGE_TTY, e);
			return;
		}
		in = out = err = slave;
	} else if (s.stdio == 0) {
		in = m->fds[0], out = m->fds[1], err = m->fds[2];
	} else if (s.stdio == 1) {
		in = null_fd, out = log_out[1], err = log_err[1];
	} else {
		in = out = err = null_fd;
	}
	int rep[2];
	if (pipe2(rep, O_CLOEXEC) < 0) {
		reply_error(s.id, 0, errno);
		goto out;
	}
	pid_t pid = fork();
	if (pid < 0) {
		reply_error(s.id, 0, errno);
		close(rep[0]);
		close(rep[1]);
		goto out;
	}
	if (pid == 0) {
		close(rep[0]);
		close(conn);
		spawn_child(&s, in, out, err, rep[1]);
	}
	close(rep[1]);
	int what[2];
	ssize_t n;
	do
		n = read(rep[0], what, sizeof what); /* EOF: it exec'd */
	while (n < 0 && errno == EINTR);
	close(rep[0]);
	if (n == sizeof what) {
		waitpid(pid, NULL, 0);
		reply_error(s.id, what[0], what[1]);
		goto out;
	}
	snprintf(k->id, sizeof k->id, "%s", s.id);
	k->pid = pid;
	if (s.lifeline) { /* kept: serve_one closes the request's descriptors */
		k->lifeline = fcntl(m->fds[m->nfds - 1], F_DUPFD_CLOEXEC, 3);
		fcntl(k->lifeline, F_SETFL, O_NONBLOCK);
	}
	struct msg *r = malloc(sizeof *r);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (r && pidfd >= 0) {
		msg_init(r, "spawned");
		msg_add(r, "id", s.id);
		msg_fd(r, pidfd);
		if (master >= 0)
			msg_fd(r, master);
		msg_send(conn, r, MSG_DONTWAIT);
	}
	if (pidfd >= 0)
		close(pidfd);
	free(r);
out:
	if (master >= 0)
		close(master);
	if (slave >= 0)
		close(slave);
}

static void do_hello(void)
{
	struct msg *m = malloc(sizeof *m);
	if (!m)
		return;
	msg_init(m, "hello");
	int self = (int)syscall(SYS_pidfd_open, getpid(), 0); /* the daemon learns init's pid from it */
	if (self >= 0) {
		msg_add(m, "init", "self");
		msg_fd(m, self);
	}
	int opened[MAX_KIDS], nopen = 0;
	for (int i = 0; i < MAX_KIDS; i++) {
		struct kid *k = &kids[i];
		if (!k->pid)
			continue;
		if (k->done) {
			char v[128];
			snprintf(v, sizeof v, "%.47s:%d", k->id, k->status);
			msg_add(m, "exited", v);
			continue;
		}
		int fd = (int)syscall(SYS_pidfd_open, k->pid, 0);
		if (fd >= 0 && msg_fd(m, fd) == 0) {
			msg_add(m, "live", k->id);
			opened[nopen++] = fd;
		} else if (fd >= 0)
			close(fd);
	}
	if (msg_send(conn, m, MSG_DONTWAIT) == 0)
		for (int i = 0; i < MAX_KIDS; i++)
			if (kids[i].pid && kids[i].done)
				forget(&kids[i]);
	for (int i = 0; i < nopen; i++)
		close(opened[i]);
	if (self >= 0)
		close(self);
	free(m);
}

static void serve_one(void)
{
	static struct msg m;
	int r = msg_recv(conn, &m);
	if (r <= 0) {
		if (r == 0 || errno != EMSGSIZE) {
			close(conn);
			conn = -1;
		}
		return;
	}
	const char *op = msg_get(&m, "op");
	if (op && !strcmp(op, "hello"))
		do_hello();
	else if (op && !strcmp(op, "spawn"))
		do_spawn(&m);
	else if (op && !strcmp(op, "signal")) {
		const char *id = msg_get(&m, "id"), *sig = msg_get(&m, "sig");
		struct kid *k = id ? kid_by_id(id) : NULL;
		if (k && !k->done && sig) /* not reaped yet, so the pid is still this child's */
			kill(k->pid, atoi(sig));
	} else if (op && !strcmp(op, "sync")) { /* everything before this is told: exits reaped first */
		static struct msg r;
		msg_init(&r, "sync");
		msg_send(conn, &r, MSG_DONTWAIT);
	}
	else
		reply_error(msg_get(&m, "id"), 0, EINVAL);
	for (int i = 0; i < m.nfds; i++)
		close(m.fds[i]);
}

/* close_range over the gaps between the descriptors to keep (sorted here), from 3 up */
static void close_all_but(int *keep, size_t n)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	unsigned from = 3;
	for (size_t i = 0; i < n; i++) {
		if (keep[i] < (int)from)
			continue;
		if ((unsigned)keep[i] > from)
			syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0);
		from = (unsigned)keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

static void make_log_pipes(void)
{
	if (pipe2(log_out, O_CLOEXEC) < 0 || pipe2(log_err, O_CLOEXEC) < 0)
		fail("cannot make the log pipes", NULL);
	fcntl(log_out[1], F_SETPIPE_SZ, LOG_PIPE_SIZE);
	fcntl(log_err[1], F_SETPIPE_SZ, LOG_PIPE_SIZE);
	fcntl(log_out[0], F_SETFL, O_NONBLOCK);
	fcntl(log_err[0], F_SETFL, O_NONBLOCK);
}

/* What the services wrote, on to the daemon; a bounded amount per call, then back to poll. */
static void forward_log(int stream)
{
	static char buf[32768];
	static struct msg m;
	int fd = stream ? log_err[0] : log_out[0];
	for (int round = 0; round < 8; round++) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			return;
		if (conn < 0) {
			dropped[stream] += (unsigned long)n;
			continue;
		}
		msg_init(&m, "log");
		msg_add(&m, "stream", stream ? "err" : "out");
		msg_addf(&m, "dropped", "%lu", dropped[stream]);
		/* the bytes last, as the value of data=, to the end of the packet */
		if (msg_add(&m, "data", "") < 0 || m.len - 1 + (size_t)n > sizeof m.buf) {
			dropped[stream] += (unsigned long)n;
			continue;
		}
		memcpy(m.buf + m.len - 1, buf, (size_t)n);
		m.len += (size_t)n - 1;
		if (msg_send(conn, &m, MSG_DONTWAIT) == 0)
			dropped[stream] = 0;
		else
			dropped[stream] += (unsigned long)n; /* the daemon is behind: never wait for it */
	}
}

/* The daemon's PID namespace (st_dev, st_ino), recorded before init makes its own: a
 * connection proves it comes from the daemon by sending, with its hello, a descriptor of that
 * namespace (/proc/self/ns/pid).  Root of another prison also shows as pid 0 here (a sibling
 * namespace) and can reach the socket if a host path leads to it; it cannot open the
 * daemon's namespace (that needs ptrace access to a process in it). */
static dev_t daemon_ns_dev;
static ino_t daemon_ns_ino;

static void record_daemon_ns(void)
{
	struct stat st;
	if (stat("/proc/self/ns/pid", &st) < 0)
		die("/proc/self/ns/pid");
	daemon_ns_dev = st.st_dev;
	daemon_ns_ino = st.st_ino;
}

/* The first packet of a new connection: a hello carrying the daemon's PID namespace.  Waits
 * for it at most 0.5 s (the daemon sends it right after connecting).  Nothing else of the connection is read. */
static int proves_daemon(int c)
{
	static struct msg m;
	struct pollfd p = {.fd = c, .events = POLLIN};
	if (poll(&p, 1, 500) != 1 || msg_recv(c, &m) <= 0)
		return 0;
	const char *op = msg_get(&m, "op");
	struct stat st;
	int ok = op && !strcmp(op, "hello") && m.nfds >= 1 && fstat(m.fds[0], &st) == 0 &&
		 st.st_dev == daemon_ns_dev && st.st_ino == daemon_ns_ino;
	for (int i = 0; i < m.nfds; i++) {
		/* a socket sent to make init's close wait (SO_LINGER with unsent data): abort it */
		struct linger now = {1, 0};
		if (fstat(m.fds[i], &st) == 0 && S_ISSOCK(st.st_mode))
			setsockopt(m.fds[i], SOL_SOCKET, SO_LINGER, &now, sizeof now);
		close(m.fds[i]);
	}
	return ok;
}

/* Only root from outside the prison: a peer in init's own PID namespace (a prison process) has
 * a pid here; one outside a confined or isolated prison's namespace shows as 0. */
static int trusted(int c, int confined)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0)
		return 0;
	return !confined || cred.pid == 0;
}

static void __attribute__((noreturn)) serve(int listen_fd, int confined)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		fail("signalfd", NULL);
	for (;;) {
		struct pollfd p[5 + MAX_KIDS] = {{.fd = listen_fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN},
						 {.fd = log_out[0], .events = POLLIN}, {.fd = log_err[0], .events = POLLIN},
						 {.fd = conn, .events = POLLIN}};
		struct kid *watched[MAX_KIDS];
		int n = 5, nw = 0;
		for (int i = 0; i < MAX_KIDS; i++)
			if (kids[i].pid && kids[i].lifeline > 0) {
				watched[nw++] = &kids[i];
				p[n++] = (struct pollfd){.fd = kids[i].lifeline, .events = POLLIN};
			}
		if (poll(p, n, -1) < 0)
			continue;
		for (int i = 0; i < nw; i++)
			if (p[5 + i].revents & (POLLIN | POLLHUP | POLLERR))
				hang_up(watched[i]);
		if (p[1].revents)
			reap(sfd);
		if (p[2].revents)
			forward_log(0);
		if (p[3].revents)
			forward_log(1);
		if (p[0].revents & POLLIN) {
			int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0 && trusted(c, confined) && proves_daemon(c)) {
				if (conn >= 0) /* the daemon that had it is gone (one daemon per host) */
					close(conn);
				conn = c;
				do_hello(); /* what it asked for, with its proof */
			} else if (c >= 0)
				close(c); /* the daemon's connection, if any, stays */
		}
		if (conn >= 0 && p[4].revents & (POLLIN | POLLHUP | POLLERR))
			serve_one();
	}
}

int init_main(int argc, char **argv)
{
	const char *root = NULL, *hostname = NULL, *cgroups[PD_MAX_CGROUPS];
	struct mnt mounts[MAX_MOUNTS];
	int nm = 0, ncg = 0, control = -1, allow = 0, max_abi = 0, ipc = 0, thin = 0, nrd = 0;
	const char *hosts = NULL, *rundir_user = NULL;
	char *rundirs[MAX_RUNDIRS];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--root") && i + 1 < argc)
			root = argv[++i];
		else if (!strcmp(a, "--control") && i + 1 < argc)
			control = atoi(argv[++i]);
		else if (!strcmp(a, "--hostname") && i + 1 < argc)
			hostname = argv[++i];
		else if (!strcmp(a, "--cgroup") && i + 1 < argc && ncg < PD_MAX_CGROUPS)
			cgroups[ncg++] = argv[++i];
		else if (!strcmp(a, "--ipc"))
			ipc = 1;
		else if (!strcmp(a, "--isolate"))
			thin = 1;
		else if (!strcmp(a, "--hosts") && i + 1 < argc)
			hosts = argv[++i];
		else if (!strcmp(a, "--rundir") && i + 1 < argc && nrd < MAX_RUNDIRS)
			rundirs[nrd++] = argv[++i];
		else if (!strcmp(a, "--rundir-user") && i + 1 < argc)
			rundir_user = argv[++i];
		else if (!strcmp(a, "--allow") && i + 1 < argc)
			allow = parse_allow(argv[++i]);
		else if (!strcmp(a, "--landlock-abi") && i + 1 < argc)
			max_abi = atoi(argv[++i]);
		else if (!strcmp(a, "--tmpfs") && i + 1 < argc && nm < MAX_MOUNTS)
			mounts[nm++] = (struct mnt){NULL, argv[++i], 0};
		else if (!strcmp(a, "--bind") && i + 3 < argc && nm < MAX_MOUNTS) {
			const char *mode = argv[i + 3];
			if (strcmp(mode, "ro") && strcmp(mode, "rw"))
				usage("--bind SRC DST ro|rw");
			mounts[nm++] = (struct mnt){argv[i + 1], argv[i + 2], !strcmp(mode, "ro")};
			i += 3;
		} else
			usage("init: bad argument (see init.c's header)");
	}
	if (root && root[0] != '/')
		usage("init: --root needs an absolute path");
	if (root && thin)
		usage("init: --root or --isolate, not both");
	if ((nm || hosts || nrd) && !root && !thin)
		usage("init: mounts, --hosts and --rundir need --root or --isolate");
	if (!hostname || !*hostname || strlen(hostname) > PD_HOSTNAME_MAX)
		usage("init: --hostname NAME (at most PD_HOSTNAME_MAX characters)");
	int type;
	socklen_t tlen = sizeof type;
	if (control < 0 || getsockopt(control, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_SEQPACKET)
		usage("init: --control FD must be a listening SOCK_SEQPACKET socket");
	if (control < 3) { /* the daemon may hand it in as stdin: out of the way of 0-2 */
		int fd = fcntl(control, F_DUPFD_CLOEXEC, 3);
		if (fd < 0 || dup2(open("/dev/null", O_RDONLY | O_CLOEXEC), control) < 0)
			die("cannot move the control socket");
		control = fd;
	}
	fcntl(control, F_SETFD, FD_CLOEXEC);
	for (int i = 0; i < ncg; i++) /* before anything else: all that follows is the prison's */
		join_cgroup(cgroups[i]);
	forget_login();
	record_daemon_ns();
	int flags = CLONE_NEWUTS | (ipc ? CLONE_NEWIPC : 0) | (root || thin ? CLONE_NEWNS | CLONE_NEWPID : 0);
	if (unshare(flags) < 0)
		die("unshare");
	if (sethostname(hostname, strlen(hostname)) < 0)
		die("sethostname");
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid > 0) {
		close(p[1]);
		char msg[PATH_MAX + 256];
		ssize_t n = read(p[0], msg, sizeof msg - 1);
		/* _exit: nothing of the process's at-exit work (a sanitizer's leak check would trace
		 * this process from a child, which lands in the new PID namespace and cannot) */
		if (n > 0) {
			msg[n] = 0;
			fprintf(stderr, "%s: %s", prog, msg);
			waitpid(pid, NULL, 0);
			_exit(1);
		}
		printf("%d\n", (int)pid);
		fflush(stdout);
		_exit(0);
	}
	/* init */
	close(p[0]);
	report_fd = p[1];
	setsid();
	if (root)
		confine(root, mounts, nm, hosts);
	else if (thin)
		isolate(mounts, nm, hosts, ipc);
	else if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) /* orphans of the prison come here */
		fail("cannot become a subreaper", NULL);
	make_rundirs(rundirs, nrd, rundir_user);
	make_log_pipes();
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0)
		fail("cannot open", "/dev/null");
	/* Landlock and seccomp while init still has CAP_SYS_ADMIN (neither then needs
	 * no_new_privs, so set-uid programs inside keep working), the bounding set last */
	restrict_landlock(max_abi);
	restrict_syscalls(allow, root != NULL);
	if (root)
		restrict_caps(allow);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rename_self(argv, argc);
	if (dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0)
		fail("cannot redirect to", "/dev/null");
	/* nothing of the daemon's but the control socket */
	int keep[] = {control, log_out[0], log_out[1], log_err[0], log_err[1], null_fd, report_fd};
	close_all_but(keep, sizeof keep / sizeof *keep);
	close(report_fd); /* EOF without a message: ready */
	report_fd = -1;
	serve(control, root || thin);
}
