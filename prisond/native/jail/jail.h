/* prisonjail: one static binary, three jobs.
 *
 *   init.c      `prisonjail init`: a prison's first process.  It makes the prison (namespaces,
 *               for a confined prison its root and mounts), restricts itself the way every
 *               process of the prison is restricted, and from then on is the only way into
 *               the prison: the daemon asks it, over a unix socket, to start a process.
 *   confine.c   the mounts and pivot_root of a confined prison.
 *   restrict.c  capability bounding set, seccomp filter, Landlock domain.
 *   spawn.c     the child side of a start: session, terminal, user, limits, exec.
 *   msg.c       the records init and the daemon exchange (key=value, descriptors attached).
 *   ctl.c       `prisonctl exec`: asks the daemon, relays the terminal or the pipes it gets.
 *   json.c      the little JSON ctl.c needs to read the daemon's replies.
 */
#ifndef PRISONJAIL_JAIL_H
#define PRISONJAIL_JAIL_H

#include "contract.h" /* written by setup.py from prisond/model/contract.py */

#include <stddef.h>
#include <sys/types.h>

extern const char *prog; /* "prisonjail" or "prisonctl", for messages */

void die(const char *what) __attribute__((noreturn));
void usage(const char *msg) __attribute__((noreturn));

/* ---- restrict.c ---- */

#define ALLOW_RAW 0x1   /* allow.raw_sockets: CAP_NET_RAW kept, raw IP sockets */
#define ALLOW_ANYAF 0x2 /* allow.socket_af: socket families beyond unix, inet, inet6, route netlink */
#define ALLOW_URING 0x4 /* allow.io_uring: its sockets are made behind the socket() filter's back */

int parse_allow(const char *flags);
/* The bounding set and the process's own sets cut to what a jail's root may do. */
void restrict_caps(int allow);
/* confined: the full deny list; otherwise only the terminal and socket rules. */
void restrict_syscalls(int allow, int confined);
/* A Landlock domain scoping abstract unix sockets and signals (ABI 6+; on older kernels a
 * domain that scopes ptrace alone).  Returns the ABI used, 0 if the kernel has no Landlock. */
int restrict_landlock(int max_abi);

/* ---- confine.c ---- */

struct mnt {
	const char *src; /* NULL: tmpfs */
	const char *dst;
	int ro;
};

/* Mounts the root, /proc, /dev, the given mounts, pivots into the root.  Reports a failure
 * through fail() (init.c), which ends the process. */
void confine(const char *root, const struct mnt *mounts, int n, const char *hosts);
/* An isolated prison without a root of its own: /proc of its PID namespace, private /run,
 * /tmp, /var/tmp, /dev/shm, the given mounts (on the host's tree), hosts over /etc/hosts. */
void isolate(const struct mnt *mounts, int n, const char *hosts, int ipc);
/* Directories of the prison's private /run (NAME relative to /run), owned by USER of the
 * prison's /etc/passwd (root if NULL), 0755, made after the mounts, as systemd's
 * RuntimeDirectory=. */
void make_rundirs(char *const *dirs, int n, const char *user);

/* ---- init.c ---- */

void fail(const char *what, const char *path) __attribute__((noreturn));
int init_main(int argc, char **argv);

/* ---- spawn.c ---- */

/* uid and gid of a user (name or number) of the prison's own /etc/passwd; -1 if none. */
int user_ids(const char *who, uid_t *uid, gid_t *gid);

#define MAX_ARGS PD_MAX_ARGS
#define MAX_ENV PD_MAX_ENV

struct spawn {
	const char *id;
	char *argv[MAX_ARGS + 1];
	int argc;
	char *envp[MAX_ENV + 1];
	int envc;
	const char *user;   /* NULL: root */
	const char *cwd;    /* NULL: "/" (or the user's home with login) */
	int login;          /* jexec -l: the user's home, HOME/SHELL/USER/LOGNAME set */
	int identity;       /* HOME/USER/LOGNAME of the user it runs as */
	long nofile;        /* RLIMIT_NOFILE, 0: unchanged */
	int tty;            /* a new pseudo-terminal, the master handed back */
	unsigned short rows, cols;
	int stdio;          /* 0: three descriptors given, 1: init's log pipes, 2: /dev/null */
	int lifeline;       /* the request's last descriptor: its other end closing hangs the process up */
};

/* Stages a failed start reports (with the errno) before exec. */
enum {
	STAGE_USER = PD_STAGE_USER,
	STAGE_IDS = PD_STAGE_IDS,
	STAGE_CWD = PD_STAGE_CWD,
	STAGE_LIMIT = PD_STAGE_LIMIT,
	STAGE_TTY = PD_STAGE_TTY,
	STAGE_EXEC = PD_STAGE_EXEC
};

/* Runs in the forked child; never returns.  in/out/err: its stdio (a terminal: all three). */
void spawn_child(struct spawn *s, int in, int out, int err, int report) __attribute__((noreturn));

/* ---- msg.c ---- */

#define MSG_MAX PD_INIT_MSG_MAX
#define MSG_FDS PD_INIT_MSG_FDS

struct msg {
	char buf[MSG_MAX];
	size_t len;
	int fds[MSG_FDS];
	int nfds;
};

void msg_init(struct msg *m, const char *op);
int msg_add(struct msg *m, const char *key, const char *value); /* -1: too long */
int msg_addf(struct msg *m, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int msg_fd(struct msg *m, int fd);
int msg_send(int sock, const struct msg *m, int flags);
/* 1 a message, 0 the peer closed, -1 an error (errno).  Descriptors beyond MSG_FDS are closed. */
int msg_recv(int sock, struct msg *m);
/* Iterates key=value records: *pos starts at 0; returns 0 at the end. */
int msg_next(const struct msg *m, size_t *pos, const char **key, size_t *klen, const char **value);
const char *msg_get(const struct msg *m, const char *key);

/* ---- ctl.c ---- */

int ctl_main(int argc, char **argv);

#endif
