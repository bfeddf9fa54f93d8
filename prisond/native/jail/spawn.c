/* The way into a prison, done once: what a child of the prison's init does between fork and
 * exec.  It already is in the prison (cgroup, namespaces, root, Landlock domain, seccomp
 * filter, bounding set: all inherited from init); here it gets a session of its own, its
 * terminal or its three descriptors and no other, its limits, its user, and its program.
 *
 * Users come from the prison's own /etc/passwd and /etc/group (this binary is static: no NSS,
 * and the files a confined prison sees are its own).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"

#define MAX_GROUPS 256 /* a user's supplementary groups taken from the prison's group file */

extern char **environ;

struct user {
	char name[256], home[PATH_MAX], shell[PATH_MAX];
	uid_t uid;
	gid_t gid;
};

static int find_user(const char *who, struct user *u)
{
	FILE *f = fopen("/etc/passwd", "re");
	char *end;
	unsigned long want = strtoul(who, &end, 10);
	int numeric = *who && !*end, found = 0;
	if (f) {
		char line[2048];
		while (!found && fgets(line, sizeof line, f)) {
			char *fields[7] = {0}, *s = line;
			int n = 0;
			line[strcspn(line, "\n")] = 0;
			for (char *tok = strsep(&s, ":"); tok && n < 7; tok = strsep(&s, ":"))
				fields[n++] = tok;
			if (n < 7)
				continue;
			if (numeric ? strtoul(fields[2], NULL, 10) == want : !strcmp(fields[0], who)) {
				snprintf(u->name, sizeof u->name, "%s", fields[0]);
				u->uid = (uid_t)strtoul(fields[2], NULL, 10);
				u->gid = (gid_t)strtoul(fields[3], NULL, 10);
				snprintf(u->home, sizeof u->home, "%s", fields[5][0] ? fields[5] : "/");
				snprintf(u->shell, sizeof u->shell, "%s", fields[6][0] ? fields[6] : "/bin/sh");
				found = 1;
			}
		}
		fclose(f);
	}
	if (!found && numeric) { /* a uid without an entry, as jexec allows */
		snprintf(u->name, sizeof u->name, "%lu", want);
		u->uid = (uid_t)want;
		u->gid = (gid_t)want;
		strcpy(u->home, "/");
		strcpy(u->shell, "/bin/sh");
		found = 1;
	}
	return found ? 0 : -1;
}

int user_ids(const char *who, uid_t *uid, gid_t *gid)
{
	struct user u;
	if (find_user(who, &u) < 0)
		return -1;
	*uid = u.uid;
	*gid = u.gid;
	return 0;
}

static int user_groups(const struct user *u, gid_t *out, int cap)
{
	int n = 0;
	out[n++] = u->gid;
	FILE *f = fopen("/etc/group", "re");
	if (!f)
		return n;
	char line[8192];
	while (n < cap && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *s = line, *fields[4] = {0};
		int k = 0;
		for (char *tok = strsep(&s, ":"); tok && k < 4; tok = strsep(&s, ":"))
			fields[k++] = tok;
		if (k < 4)
			continue;
		char *save = NULL;
		for (char *m = strtok_r(fields[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
			if (!strcmp(m, u->name)) {
				out[n++] = (gid_t)strtoul(fields[2], NULL, 10);
				break;
			}
	}
	fclose(f);
	return n;
}

static void __attribute__((noreturn)) failed(int report, int stage)
{
	int msg[2] = {stage, errno};
	if (write(report, msg, sizeof msg) < 0) {
		/* init is gone: nobody to tell */
	}
	_exit(127);
}

/* envp without NAME=..., then NAME=VALUE appended (space for it is reserved by the caller) */
static void set_env(struct spawn *s, const char *name, const char *value)
{
	size_t n = strlen(name);
	int w = 0;
	for (int r = 0; r < s->envc; r++)
		if (strncmp(s->envp[r], name, n) || s->envp[r][n] != '=')
			s->envp[w++] = s->envp[r];
	char *kv = malloc(n + strlen(value) + 2);
	if (!kv)
		return;
	sprintf(kv, "%s=%s", name, value);
	s->envp[w++] = kv;
	s->envp[w] = NULL;
	s->envc = w;
}

/* dup2 each of in/out/err onto 0/1/2, whatever numbers they have now */
static void stdio(int in, int out, int err)
{
	int fds[3] = {in, out, err};
	for (int i = 0; i < 3; i++) /* out of the way of 0-2 first */
		if (fds[i] >= 0 && fds[i] < 3)
			fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
	for (int i = 0; i < 3; i++)
		if (fds[i] < 0 || dup2(fds[i], i) < 0)
			_exit(127);
}

void spawn_child(struct spawn *s, int in, int out, int err, int report)
{
	/* a fresh signal state: init blocks everything and waits on a signalfd */
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* a session of its own: no controlling terminal but the one made for it */
	setsid();
	if (s->tty) {
		if (ioctl(in, TIOCSCTTY, 0) < 0)
			failed(report, STAGE_TTY);
	}
	stdio(in, out, err);

	struct user u = {.name = "root", .home = "/", .shell = "/bin/sh", .uid = 0, .gid = 0};
	if (s->user && find_user(s->user, &u) < 0) {
		errno = ENOENT;
		failed(report, STAGE_USER);
	}
	if (!s->user)
		find_user("0", &u); /* root's home and shell, where the prison says */
	if (s->user || s->login || s->identity) {
		set_env(s, "HOME", u.home);
		set_env(s, "USER", u.name);
		set_env(s, "LOGNAME", u.name);
		if (s->login)
			set_env(s, "SHELL", u.shell);
	}
	if (s->nofile > 0) {
		struct rlimit rl = {.rlim_cur = (rlim_t)s->nofile, .rlim_max = (rlim_t)s->nofile};
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			failed(report, STAGE_LIMIT);
	}
	if (s->user && u.uid != 0) {
		gid_t groups[MAX_GROUPS];
		int ng = user_groups(&u, groups, MAX_GROUPS);
		if (setgroups((size_t)ng, groups) < 0 || setgid(u.gid) < 0 || setuid(u.uid) < 0)
			failed(report, STAGE_IDS);
	} else if (s->user) {
		gid_t g = u.gid;
		if (setgroups(1, &g) < 0 || setgid(u.gid) < 0)
			failed(report, STAGE_IDS);
	}
	const char *dir = s->cwd ? s->cwd : s->login ? u.home : "/";
	if (chdir(dir) < 0 && (s->cwd || chdir("/") < 0))
		failed(report, STAGE_CWD);
	/* nothing of init's but the report pipe, which closes at exec */
	syscall(SYS_close_range, 3, report - 1, 0);
	syscall(SYS_close_range, report + 1, ~0U, 0);
	char *shell[2] = {u.shell, NULL};
	char **argv = s->argc ? s->argv : shell;
	environ = s->envp; /* execvp searches the PATH of the environment the program gets */
	execvp(argv[0], argv);
	failed(report, STAGE_EXEC);
}
