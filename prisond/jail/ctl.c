/*
 * prisonctl's fast path: `prisonctl exec` without starting Python (whose start alone costs
 * more than bwrap's whole run).  scripts/setup installs this binary as /usr/local/bin/prisonctl.
 *
 * Only the common case is handled here: ask the daemon (prison.exec, flat reply), join the
 * prison's cgroup, then enter a confined prison with prisonjail's own `enter`, or join an
 * unconfined one's namespaces and exec.  Every other command, and any case this code does not
 * handle (an error from the daemon, -u/-l for an unconfined prison, a name it would have to
 * quote), goes to the Python prisonctl with the same arguments, which gives the full behaviour
 * and the proper messages and exit codes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"

#define PY_PRISONCTL "/usr/local/lib/prisond/prisonctl.py"
#define DEFAULT_SOCKET "/run/prisond/control.sock"
#define REPLY_MAX 65536
#define MAX_ITEMS 512

extern char **environ;

static int fallback(char **argv)
{
	const char *py = getenv("PRISONCTL_PYTHON");
	if (!py || !*py)
		py = PY_PRISONCTL;
	argv[0] = (char *)py;
	execv(py, argv);
	fprintf(stderr, "prisonctl: cannot run %s: %s (run scripts/setup)\n", py, strerror(errno));
	return 1;
}

static int safe_name(const char *s)
{
	if (!*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '-'))
			return 0;
	return 1;
}

/* One JSON string at *p (after its opening quote), unescaped in place; NULL if not handled. */
static char *json_string(char **p)
{
	char *in = *p, *out = *p, *start = *p;
	for (;;) {
		char c = *in++;
		if (c == 0)
			return NULL;
		if (c == '"')
			break;
		if (c == '\\') {
			c = *in++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned v;
				if (sscanf(in, "%4x", &v) != 1 || v == 0 || v > 0x7f)
					return NULL; /* beyond ASCII: let Python do it */
				c = (char)v;
				in += 4;
				break;
			}
			default:
				return NULL;
			}
		}
		*out++ = c;
	}
	*out = 0;
	*p = in;
	return start;
}

/* The result list of a flat reply: items[0..n); -1 unless the reply is ok with a list. */
static int parse_reply(char *reply, char **items, int cap)
{
	if (!strstr(reply, "\"ok\":true"))
		return -1;
	char *p = strstr(reply, "\"result\":[");
	if (!p)
		return -1;
	p += 10;
	int n = 0;
	for (;;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == ']')
			return n;
		if (*p != '"' || n >= cap)
			return -1;
		p++;
		if (!(items[n++] = json_string(&p)))
			return -1;
	}
}

static int ask(const char *sock, const char *name, char *reply, size_t cap)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	if (fd < 0 || strlen(sock) >= sizeof un.sun_path)
		return -1;
	strcpy(un.sun_path, sock);
	char req[256];
	int n = snprintf(req, sizeof req,
			 "{\"v\":1,\"id\":1,\"method\":\"prison.exec\",\"params\":{\"name\":\"%s\",\"flat\":true}}\n", name);
	size_t got = 0;
	if (connect(fd, (struct sockaddr *)&un, sizeof un) < 0 || write(fd, req, n) != n) {
		close(fd);
		return -1;
	}
	while (got < cap - 1) {
		ssize_t r = read(fd, reply + got, cap - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (reply[got - 1] == '\n')
			break;
	}
	close(fd);
	reply[got] = 0;
	return got && reply[got - 1] == '\n' ? 0 : -1;
}

static void put_env(char ***env, int *n, char *kv)
{
	size_t klen = strcspn(kv, "=");
	for (int i = 0; i < *n; i++)
		if (!strncmp((*env)[i], kv, klen) && (*env)[i][klen] == '=') {
			(*env)[i] = kv;
			return;
		}
	(*env)[(*n)++] = kv;
	(*env)[*n] = NULL;
}

int ctl_main(int argc, char **argv)
{
	const char *sock = getenv("PRISOND_SOCKET");
	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	int i = 1;
	while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--")) {
		if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--socket")) && i + 1 < argc) {
			sock = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			sock = argv[i] + 9;
			i++;
		} else
			return fallback(argv);
	}
	if (i >= argc || strcmp(argv[i], "exec"))
		return fallback(argv);
	i++;
	const char *user = NULL;
	int login = 0;
	while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--")) {
		if (!strcmp(argv[i], "-l"))
			login = 1;
		else if (!strcmp(argv[i], "-u") && i + 1 < argc)
			user = argv[++i];
		else if (!strncmp(argv[i], "-u", 2) && argv[i][2])
			user = argv[i] + 2;
		else
			return fallback(argv);
		i++;
	}
	if (i >= argc || !safe_name(argv[i]))
		return fallback(argv);
	const char *name = argv[i++];
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	char **cmd = argv + i;
	int ncmd = argc - i;

	static char reply[REPLY_MAX];
	char *items[MAX_ITEMS];
	int n;
	if (ask(sock, name, reply, sizeof reply) < 0 || (n = parse_reply(reply, items, MAX_ITEMS)) < 0 || n % 2)
		return fallback(argv);
	const char *init = NULL, *allow = "-", *preload = NULL, *nofile = NULL;
	const char *pins[8], *procs[8];
	int npins = 0, nenv = 0, nprocs = 0;
	char *envs[MAX_ITEMS];
	for (int k = 0; k < n; k += 2) {
		const char *key = items[k];
		char *val = items[k + 1];
		if (!strcmp(key, "cgroup_procs") && nprocs < 8)
			procs[nprocs++] = val;
		else if (!strcmp(key, "nofile"))
			nofile = val;
		else if (!strcmp(key, "init_pid"))
			init = val;
		else if (!strcmp(key, "allow"))
			allow = val;
		else if (!strcmp(key, "preload"))
			preload = val;
		else if (!strcmp(key, "pin") && npins < 8)
			pins[npins++] = val;
		else if (!strcmp(key, "env"))
			envs[nenv++] = val;
	}
	if (!nprocs || !preload || (!init && (user || login)))
		return fallback(argv);

	/* the environment: the caller's (or jexec -l's few), the prison's, the shim first */
	int cap = 8 + nenv;
	for (char **e = environ; *e; e++)
		cap++;
	char **env = calloc(cap + 1, sizeof *env);
	int ne = 0;
	if (!env)
		return fallback(argv);
	if (login) {
		env[ne++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
		const char *term = getenv("TERM");
		if (term) {
			char *t = malloc(strlen(term) + 6);
			sprintf(t, "TERM=%s", term);
			env[ne++] = t;
		}
	} else
		for (char **e = environ; *e; e++)
			env[ne++] = *e;
	for (int k = 0; k < nenv; k++)
		put_env(&env, &ne, envs[k]);
	const char *old = getenv("LD_PRELOAD");
	char *lp = malloc(strlen(preload) + (old ? strlen(old) : 0) + 16);
	if (!lp)
		return fallback(argv);
	if (old && *old && !strstr(old, preload) && !login)
		sprintf(lp, "LD_PRELOAD=%s:%s", preload, old);
	else
		sprintf(lp, "LD_PRELOAD=%s", preload);
	put_env(&env, &ne, lp);

	for (int k = 0; k < nprocs; k++) { /* its cgroup, and on v1 hosts its controllers' */
		int fd = open(procs[k], O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1) {
			if (fd >= 0)
				close(fd);
			return fallback(argv);
		}
		close(fd);
	}
	if (nofile) {
		struct rlimit rl = {.rlim_cur = strtoul(nofile, NULL, 10), .rlim_max = strtoul(nofile, NULL, 10)};
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return fallback(argv);
	}
	environ = env;

	if (init) { /* confined: prisonjail enter, in this very process */
		char *eargv[16 + MAX_ITEMS];
		int k = 0;
		eargv[k++] = "--pid";
		eargv[k++] = (char *)init;
		eargv[k++] = "--allow";
		eargv[k++] = (char *)allow;
		if (user) {
			eargv[k++] = "--user";
			eargv[k++] = (char *)user;
		}
		if (login)
			eargv[k++] = "--login";
		eargv[k++] = "--";
		for (int c = 0; c < ncmd && k < 15 + MAX_ITEMS; c++)
			eargv[k++] = cmd[c];
		eargv[k] = NULL;
		return enter_main(k, eargv);
	}
	for (int p = 0; p < npins; p++) { /* "uts=/path/to/pin" */
		const char *eq = strchr(pins[p], '=');
		int type = !strncmp(pins[p], "uts=", 4) ? CLONE_NEWUTS : !strncmp(pins[p], "ipc=", 4) ? CLONE_NEWIPC : 0;
		int nfd = eq && type ? open(eq + 1, O_RDONLY | O_CLOEXEC) : -1;
		if (nfd < 0 || setns(nfd, type) < 0) {
			fprintf(stderr, "prisonctl: cannot enter prison %s's namespaces: %s\n", name, strerror(errno));
			return 1;
		}
		close(nfd);
	}
	char *shell[2] = {getenv("SHELL") ? getenv("SHELL") : "/bin/sh", NULL};
	char **run = ncmd ? cmd : shell;
	execvp(run[0], run);
	int e = errno;
	fprintf(stderr, "prisonctl: exec: %s: %s\n", run[0], e == ENOENT ? "command not found" : strerror(e));
	return e == ENOENT ? 127 : 126;
}
