/*
 * `prisonctl exec`: run a command in a prison, as jexec does, without handing the prison
 * anything of the caller's.  scripts/setup installs this binary as /usr/local/bin/prisonctl;
 * the Python prisonctl runs it for `exec`; every other command goes on to the Python one.
 *
 *   prisonctl [--socket PATH] exec [-l|-E] [-u USER] [-t|-T] NAME [--] [COMMAND [ARG...]]
 *
 * The daemon has the prison's init start the command (the one way into a prison) and hands
 * back, with its first reply, the other ends of what the command got: the master of a new
 * pseudo-terminal of the prison (-t, the default when stdin and stdout are terminals), or
 * three pipes.  This process relays between them and its own terminal or descriptors, so no
 * descriptor of the caller (its terminal above all: TIOCSTI, a stolen foreground) reaches
 * the prison.  The window size follows SIGWINCH; other signals sent to this process go to the
 * command through the daemon (exec.signal); the second reply is the command's end, which is
 * this process's end: the same status, or the same signal.
 *
 * Exit status: the command's; 126/127 it could not be run; 1 the daemon refused; 2 usage;
 * 69 the daemon is not running; 77 permission denied.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "jail.h"
#include "json.h"

#define PY_PRISONCTL PD_PY_PRISONCTL
#define DEFAULT_SOCKET PD_CONTROL_SOCKET
#define REPLY_MAX PD_CTL_REPLY_MAX
#define EX_ERROR PD_EX_ERROR
#define EX_USAGE PD_EX_USAGE
#define EX_UNAVAILABLE PD_EX_UNAVAILABLE
#define EX_NOPERM PD_EX_NOPERM

extern char **environ;

/* Why the Python prisonctl cannot be run, in words that point at the cause. */
static void why_not(const char *py, int err)
{
	char line[PATH_MAX + 8] = "";
	FILE *f = fopen(py, "re"); /* ENOENT from execv may be the interpreter's */
	int there = f != NULL;
	if (f) {
		if (!fgets(line, sizeof line, f))
			line[0] = 0;
		fclose(f);
	}
	if (line[0] == '#' && line[1] == '!') { /* the launcher is there: its interpreter is not to this user */
		char *interp = line + 2;
		interp[strcspn(interp, " \n")] = 0;
		if (access(interp, X_OK) < 0) {
			fprintf(stderr, "prisonctl: cannot run %s: its Python %s: %s for uid %d (scripts/setup installs "
				"a prisonctl every user can run)\n", py, interp, strerror(errno), (int)getuid());
			return;
		}
	}
	fprintf(stderr, "prisonctl: cannot run %s: %s (%s)\n", py, strerror(err),
		there ? "scripts/setup repairs it" : "install prisond: scripts/setup, or the Debian package");
}

static int fallback(char **argv)
{
	const char *py = getenv("PRISONCTL_PYTHON");
	if (!py || !*py)
		py = PY_PRISONCTL;
	argv[0] = (char *)py;
	execv(py, argv);
	why_not(py, errno);
	return EX_ERROR;
}

static int say(int status, const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "prisonctl: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return status;
}

/* ------------------------------------------------------------------ the request */

struct buf {
	char *p;
	size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
		char *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

static int puts_(struct buf *b, const char *s)
{
	return put(b, s, strlen(s));
}

static int put_json(struct buf *b, const char *s)
{
	size_t cap = strlen(s) * 6 + 16;
	char *tmp = malloc(cap);
	long n = tmp ? json_put_string(tmp, cap, s) : -1;
	int r = n < 0 ? (int)n : put(b, tmp, (size_t)n);
	free(tmp);
	return r;
}

/* An argument or environment string: a JSON string when it is UTF-8 text, else its bytes as
 * {"b": BASE64} (the protocol's form for bytes; see protocol.py). */
static int put_bytes_or_text(struct buf *b, const char *s)
{
	int r = put_json(b, s);
	if (r != -2)
		return r;
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	r = puts_(b, "{\"b\":\"");
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		char out[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=',
			       i + 2 < n ? b64[v & 63] : '='};
		r |= put(b, out, 4);
	}
	return r | puts_(b, "\"}");
}

struct opts {
	const char *sock, *name, *user;
	int login, tty, keep_env;
	char **cmd;
	int ncmd;
};

/* What the daemon keeps of the caller's environment without -E (api.exec_env). */
static int kept_env(const char *kv, int login)
{
	static const char *kept[] = {"TERM=", "COLORTERM=", "LANG=", "LANGUAGE=", "TZ=", "LC_"};
	size_t n = login ? 1 : sizeof kept / sizeof *kept;
	for (size_t i = 0; i < n; i++)
		if (!strncmp(kv, kept[i], strlen(kept[i])))
			return 1;
	return 0;
}

static int build_request(struct buf *b, const struct opts *o)
{
	int r = 0;
	r |= puts_(b, "{\"v\":" PD_STR(PD_PROTOCOL_VERSION) ",\"id\":1,\"method\":\"prison.exec\",\"params\":{\"name\":");
	r |= put_json(b, o->name);
	r |= puts_(b, ",\"argv\":[");
	for (int i = 0; i < o->ncmd; i++) {
		if (i)
			r |= puts_(b, ",");
		r |= put_bytes_or_text(b, o->cmd[i]);
	}
	r |= puts_(b, "]");
	if (o->user) {
		r |= puts_(b, ",\"user\":");
		r |= put_json(b, o->user);
	}
	r |= puts_(b, o->login ? ",\"login\":true" : ",\"login\":false");
	r |= puts_(b, o->keep_env ? ",\"keep_env\":true" : ",\"keep_env\":false");
	r |= puts_(b, o->tty ? ",\"tty\":true" : ",\"tty\":false");
	if (o->tty) {
		struct winsize ws;
		if (ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
			char n[64];
			snprintf(n, sizeof n, ",\"rows\":%u,\"cols\":%u", ws.ws_row, ws.ws_col);
			r |= puts_(b, n);
		}
	}
	/* with -E the caller's environment, as jexec keeps it; else the daemon keeps only the
	 * terminal's type and the locale (-l: TERM alone), and what it would drop is not sent */
	r |= puts_(b, ",\"env\":{");
	int first = 1;
	for (char **e = environ; *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq || eq == *e || (!o->keep_env && !kept_env(*e, o->login)))
			continue;
		char *key = strndup(*e, (size_t)(eq - *e));
		if (!key)
			return -1;
		r |= puts_(b, first ? "" : ",");
		first = 0;
		int k = put_json(b, key); /* a name that is not text: as bytes would not be a key */
		free(key);
		if (k == -2)
			r |= puts_(b, "\"\"");
		else
			r |= k;
		r |= puts_(b, ":");
		r |= put_bytes_or_text(b, eq + 1);
	}
	r |= puts_(b, "}}}\n");
	return r ? -1 : 0;
}

/* ------------------------------------------------------------------ talking to the daemon */

static int connect_daemon(const char *path)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof un.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(un.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&un, sizeof un) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Lines from the daemon, with any descriptors that came with them. */
struct reader {
	int sock;
	char buf[REPLY_MAX];
	size_t len;
	int fds[8], nfds;
};

/* One more read; 0 EOF, -1 error, 1 something arrived. */
static int fill(struct reader *r)
{
	if (r->len >= sizeof r->buf - 1)
		return -1;
	struct iovec iov = {.iov_base = r->buf + r->len, .iov_len = sizeof r->buf - 1 - r->len};
	union {
		char b[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
	ssize_t n = recvmsg(r->sock, &h, MSG_CMSG_CLOEXEC);
	if (n < 0 && errno == EINTR)
		return 1;
	if (n <= 0)
		return (int)n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < count; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (r->nfds < 8)
					r->fds[r->nfds++] = fd;
				else
					close(fd);
			}
		}
	r->len += (size_t)n;
	return 1;
}

/* The next whole line (without its newline) into line; 1 one, 0 none buffered. */
static int next_line(struct reader *r, char *line, size_t cap)
{
	char *nl = memchr(r->buf, '\n', r->len);
	if (!nl)
		return 0;
	size_t n = (size_t)(nl - r->buf);
	if (n >= cap)
		n = cap - 1;
	memcpy(line, r->buf, n);
	line[n] = 0;
	size_t used = (size_t)(nl - r->buf) + 1;
	memmove(r->buf, r->buf + used, r->len - used);
	r->len -= used;
	return 1;
}

static long field_int(const char *line, const char *path, long dflt)
{
	struct json_value v;
	long n;
	if (json_find(line, strlen(line), path, &v) < 0 || json_int(&v, &n) < 0)
		return dflt;
	return n;
}

/* An error reply: its message, and the status this process ends with. */
static int refused(const char *line)
{
	struct json_value v;
	char code[64] = "", msg[4096] = "";
	if (json_find(line, strlen(line), "error.code", &v) == 0)
		json_string(&v, code, sizeof code);
	if (json_find(line, strlen(line), "error.message", &v) < 0 || json_string(&v, msg, sizeof msg) < 0)
		snprintf(msg, sizeof msg, "prisond sent a malformed reply");
	fprintf(stderr, "prisonctl: %s\n", msg);
	long status = field_int(line, "error.status", -1); /* exec_failed: 126 or 127 */
	if (status >= 0)
		return (int)status;
	return !strcmp(code, "permission_denied") ? EX_NOPERM : EX_ERROR;
}

static int is_ok(const char *line)
{
	struct json_value v;
	return json_find(line, strlen(line), "ok", &v) == 0 && json_true(&v);
}

/* ------------------------------------------------------------------ the relay */

static struct termios saved;
static int restore_tty = 0;

static void tty_restore(void)
{
	if (restore_tty)
		tcsetattr(0, TCSADRAIN, &saved);
	restore_tty = 0;
}

static void tty_raw(void)
{
	if (tcgetattr(0, &saved) < 0)
		return;
	struct termios raw = saved;
	cfmakeraw(&raw);
	if (tcsetattr(0, TCSADRAIN, &raw) == 0)
		restore_tty = 1;
}

static void send_signal(int sock, int sig)
{
	char req[128];
	static int id = 2;
	int n = snprintf(req, sizeof req, "{\"v\":" PD_STR(PD_PROTOCOL_VERSION) ",\"id\":%d,\"method\":\"exec.signal\",\"params\":{\"signal\":%d}}\n",
			 id++, sig);
	write_all(sock, req, (size_t)n);
}

struct stream {
	int from, to; /* -1: closed */
};

/* Copies what is there now; 0 on EOF or when the reader end is gone, 1 otherwise. */
static int pump(struct stream *s)
{
	char buf[65536];
	ssize_t n = read(s->from, buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0 || write_all(s->to, buf, (size_t)n) < 0) {
		close(s->from);
		s->from = -1;
		return 0;
	}
	return 1;
}

/* After the end: what the command wrote before it ended is in the pipe; take it, but do not
 * wait for processes it left behind holding the pipe open. */
static void drain(struct stream *s)
{
	if (s->from < 0)
		return;
	fcntl(s->from, F_SETFL, O_NONBLOCK);
	while (pump(s) && s->from >= 0) {
		struct pollfd p = {.fd = s->from, .events = POLLIN};
		if (poll(&p, 1, 0) <= 0)
			break;
	}
}

static int relay(struct reader *r, int tty)
{
	/* tty: the master; else the command's stdin (write end), stdout and stderr (read ends);
	 * last the lifeline, held open as long as this process lives (its end hangs the command up) */
	if (r->nfds != (tty ? 2 : 4))
		return say(EX_ERROR, "prisond sent %s%s descriptors", "the wrong number of", "");
	struct stream out[2] = {{r->fds[0], 1}, {-1, 2}};
	struct stream in = {0, r->fds[0]};
	if (!tty) {
		out[0] = (struct stream){r->fds[1], 1};
		out[1] = (struct stream){r->fds[2], 2};
		in.to = r->fds[0];
	} else {
		tty_raw();
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	int fwd[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};
	for (size_t i = 0; i < sizeof fwd / sizeof *fwd; i++)
		sigaddset(&sigs, fwd[i]);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	signal(SIGPIPE, SIG_IGN);
	long status = -1, sig = -1;
	int done = 0, orphan = 0; /* orphan: the daemon went away; relay until the streams end */
	while (!done) {
		if (orphan && out[0].from < 0 && out[1].from < 0)
			break;
		struct pollfd p[5] = {{.fd = orphan ? -1 : r->sock, .events = POLLIN}, {.fd = sfd, .events = POLLIN},
				      {.fd = in.from, .events = POLLIN}, {.fd = out[0].from, .events = POLLIN},
				      {.fd = out[1].from, .events = POLLIN}};
		if (poll(p, 5, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) {
				if (si.ssi_signo == SIGWINCH) {
					struct winsize ws;
					if (tty && ioctl(0, TIOCGWINSZ, &ws) == 0)
						ioctl(r->fds[0], TIOCSWINSZ, &ws);
				} else if (!orphan)
					send_signal(r->sock, (int)si.ssi_signo);
			}
		}
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR) && !pump(&in) && !tty) {
			close(in.to); /* EOF on our stdin: EOF on the command's */
			in.to = -1;
		}
		for (int i = 0; i < 2; i++)
			if (p[3 + i].revents & (POLLIN | POLLHUP | POLLERR))
				pump(&out[i]);
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			int got = fill(r);
			char line[REPLY_MAX];
			while (next_line(r, line, sizeof line)) {
				if (field_int(line, "id", 0) != 1)
					continue; /* an exec.signal acknowledged */
				if (!is_ok(line)) {
					tty_restore();
					return refused(line);
				}
				status = field_int(line, "result.exit", -1);
				sig = field_int(line, "result.signal", -1);
				done = status >= 0 || sig > 0;
			}
			if (got <= 0 && !done)
				orphan = 1; /* a daemon restarting: the command runs on, its streams with it */
		}
	}
	drain(&out[0]);
	drain(&out[1]);
	tty_restore();
	if (orphan)
		return say(EX_ERROR, "prisond went away while %s%s ran: its exit status is unknown", "the command", "");
	if (sig > 0) {
		signal((int)sig, SIG_DFL);
		sigprocmask(SIG_UNBLOCK, &sigs, NULL);
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, (int)sig);
		sigprocmask(SIG_UNBLOCK, &one, NULL);
		raise((int)sig);
		return 128 + (int)sig;
	}
	return (int)status;
}

/* ------------------------------------------------------------------ main */

int ctl_main(int argc, char **argv)
{
	struct opts o = {.tty = -1};
	o.sock = getenv(PD_SOCKET_ENV);
	if (!o.sock || !*o.sock)
		o.sock = DEFAULT_SOCKET;
	int i = 1;
	while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--")) {
		if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--socket")) && i + 1 < argc) {
			o.sock = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			o.sock = argv[i] + 9;
			i++;
		} else
			return fallback(argv);
	}
	if (i >= argc || strcmp(argv[i], "exec"))
		return fallback(argv);
	for (i++; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-l"))
			o.login = 1;
		else if (!strcmp(argv[i], "-t"))
			o.tty = 1;
		else if (!strcmp(argv[i], "-E"))
			o.keep_env = 1;
		else if (!strcmp(argv[i], "-T"))
			o.tty = 0;
		else if (!strcmp(argv[i], "-u") && i + 1 < argc)
			o.user = argv[++i];
		else if (!strncmp(argv[i], "-u", 2) && argv[i][2])
			o.user = argv[i] + 2;
		else
			return say(EX_USAGE, "unknown exec option %s%s (exec [-l|-E] [-u USER] [-t|-T] NAME [--] [CMD...])",
				   argv[i], "");
	}
	if (i >= argc)
		return say(EX_USAGE, "exec needs a prison name%s%s", "", "");
	o.name = argv[i++];
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	o.cmd = argv + i;
	o.ncmd = argc - i;
	if (o.tty < 0)
		o.tty = isatty(0) && isatty(1);
	else if (o.tty && !isatty(0))
		return say(EX_USAGE, "exec -t: standard input is not a terminal%s%s", "", "");

	struct buf req = {0};
	int b = build_request(&req, &o);
	if (b == -2)
		return EX_USAGE;
	if (b < 0)
		return say(EX_ERROR, "out of memory%s%s", "", "");
	int sock = connect_daemon(o.sock);
	if (sock < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			return say(EX_UNAVAILABLE, "prisond is not running (nothing listens on %s)%s", o.sock, "");
		if (errno == EACCES || errno == EPERM)
			return say(EX_NOPERM, "permission denied connecting to %s%s", o.sock, "");
		return say(EX_ERROR, "cannot connect to %s: %s", o.sock, strerror(errno));
	}
	if (write_all(sock, req.p, req.len) < 0)
		return say(EX_ERROR, "cannot send to prisond: %s%s", strerror(errno), "");
	free(req.p);
	static struct reader r;
	r.sock = sock;
	char line[REPLY_MAX];
	for (;;) {
		if (next_line(&r, line, sizeof line))
			break;
		if (fill(&r) <= 0)
			return say(EX_ERROR, "prisond closed the connection%s%s", "", "");
	}
	if (!is_ok(line))
		return refused(line);
	struct json_value v;
	int tty = json_find(line, strlen(line), "result.tty", &v) == 0 && json_true(&v);
	return relay(&r, tty);
}
