/*
 * prisonjail: makes a confined prison and puts processes into it.  Built static by
 * `pip install` (so LD_PRELOAD never reaches it and it needs nothing from the prison's root).
 *
 *   prisonjail init --root DIR [--uts PIN] [--ipc PIN] [MOUNT ...]
 *       MOUNT: --tmpfs DST | --bind SRC DST ro|rw      (DST inside the root, in order)
 *     Joins the pinned UTS/IPC namespaces, makes a new mount and PID namespace, and forks the
 *     prison's init (PID 1 there): it mounts the root on itself, /proc (with the kernel's
 *     knobs read-only), a minimal /dev, the given mounts, pivot_root()s into the root and
 *     detaches the host's tree, drops every capability, then only reaps orphans.  Prints
 *     init's host pid once the prison is ready, or one line saying what failed.
 *
 *   prisonctl ...   (this binary under that name: see ctl.c)
 *
 *   prisonjail enter --pid INIT [--user USER] [--login] [--allow r,a] [--] [COMMAND ...]
 *     setns() into init's namespaces (through a pidfd: all of them or none), forks the
 *     process that runs COMMAND (default: the user's shell) as the jailed superuser: the
 *     bounding set cut to what a jail's root may do, a seccomp filter for what capabilities
 *     do not cover, no inherited descriptors but 0-2.  This process stays outside, forwards
 *     signals and exits as the command did.
 *
 * Mount targets are resolved one component at a time with RESOLVE_NO_SYMLINKS under the
 * root, so a symlink the prison planted cannot send a mount onto the host's tree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#if defined(__x86_64__)
#define ARCH_NR AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH_NR AUDIT_ARCH_AARCH64
#else
#error "prisonjail: add this architecture's AUDIT_ARCH"
#endif

#define MAX_MOUNTS 64

static const char *prog = "prisonjail";

static void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

static void usage(const char *msg)
{
	fprintf(stderr, "%s: %s\n", prog, msg);
	exit(2);
}

/* ------------------------------------------------------------------ init */

struct mnt {
	const char *src; /* NULL: tmpfs */
	const char *dst;
	int ro;
};

static int report_fd = -1; /* init's pipe to the parent: one line of failure, or nothing */

static void fail(const char *what, const char *path)
{
	char buf[PATH_MAX + 256];
	int n = snprintf(buf, sizeof buf, "%s %s: %s\n", what, path ? path : "", strerror(errno));
	if (write(report_fd, buf, n > 0 ? (size_t)n : 0) < 0) {
		/* the parent is gone: nobody to tell */
	}
	_exit(1);
}

/* Opens (creating when missing) PATH under root fd ROOT without following any symlink. */
static int open_in_root(int root, const char *path, int file)
{
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	int cur = dup(root);
	char *save = NULL;
	char *comp = strtok_r(buf, "/", &save);
	while (comp) {
		char *next = strtok_r(NULL, "/", &save);
		int last = next == NULL;
		if (strcmp(comp, "..") == 0) {
			close(cur);
			errno = EINVAL;
			return -1;
		}
		if (last && file) {
			int fd = openat(cur, comp, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
			if (fd < 0 && errno != EISDIR) {
				close(cur);
				return -1;
			}
			if (fd >= 0)
				close(fd);
		} else if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
			close(cur);
			return -1;
		}
		struct open_how how = {.flags = O_PATH | O_CLOEXEC | O_NOFOLLOW,
				       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH};
		if (!last || !file)
			how.flags |= O_DIRECTORY;
		int fd = syscall(SYS_openat2, cur, comp, &how, sizeof how);
		close(cur);
		if (fd < 0)
			return -1;
		cur = fd;
		comp = next;
	}
	return cur;
}

static void fdpath(char *out, size_t cap, int fd)
{
	snprintf(out, cap, "/proc/self/fd/%d", fd);
}

/* mount(2) onto PATH inside the root, resolved safely. */
static void mount_in(int root, const char *path, int file, const char *src, const char *type,
		     unsigned long flags, const char *data)
{
	int fd = open_in_root(root, path, file);
	if (fd < 0)
		fail("cannot make mount point", path);
	char p[64];
	fdpath(p, sizeof p, fd);
	if (mount(src, p, type, flags, data) < 0)
		fail("cannot mount", path);
	close(fd);
}

static int open_beneath(int root, const char *path)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC | O_NOFOLLOW,
			       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH};
	while (*path == '/')
		path++;
	return syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
}

/* Remounts the mount now on top at PATH (a fresh lookup: an fd opened before the mount
 * would name the one underneath). */
static void remount(int root, const char *path, unsigned long flags)
{
	int fd = open_beneath(root, path);
	char p[64];
	fdpath(p, sizeof p, fd);
	if (fd < 0 || mount(NULL, p, NULL, MS_REMOUNT | flags, NULL) < 0)
		fail("cannot make read-only", path);
	close(fd);
}

static void remount_ro(int root, const char *path, unsigned long extra)
{
	int fd = open_beneath(root, path);
	if (fd < 0)
		return; /* the kernel has no such knob: nothing to protect */
	char p[64];
	fdpath(p, sizeof p, fd);
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
		fail("cannot bind", path);
	close(fd);
	remount(root, path, MS_BIND | MS_RDONLY | extra);
}

static void mask(int root, const char *path)
{
	int fd = open_beneath(root, path);
	if (fd < 0)
		return;
	char p[64];
	fdpath(p, sizeof p, fd);
	if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0)
		fail("cannot mask", path);
	close(fd);
}

static void make_dev(int root)
{
	static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	mount_in(root, "dev", 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
		char host[64], in[64];
		snprintf(host, sizeof host, "/dev/%s", nodes[i]);
		snprintf(in, sizeof in, "dev/%s", nodes[i]);
		mount_in(root, in, 1, host, NULL, MS_BIND, NULL);
	}
	mount_in(root, "dev/pts", 0, "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "newinstance,ptmxmode=0666,mode=0620,gid=5");
	mount_in(root, "dev/shm", 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	int dev = open_in_root(root, "dev", 0);
	if (dev < 0)
		fail("cannot open", "dev");
	static const char *links[][2] = {{"pts/ptmx", "ptmx"},     {"/proc/self/fd", "fd"},
					 {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
					 {"/proc/self/fd/2", "stderr"}};
	for (size_t i = 0; i < sizeof links / sizeof *links; i++)
		if (symlinkat(links[i][0], dev, links[i][1]) < 0 && errno != EEXIST)
			fail("cannot link", links[i][1]);
	close(dev);
}

static void make_proc(int root)
{
	static const char *ro[] = {"proc/sys", "proc/sysrq-trigger", "proc/bus", "proc/fs", "proc/irq"};
	static const char *masked[] = {"proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug",
				       "proc/latency_stats", "proc/kallsyms"};
	mount_in(root, "proc", 0, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	for (size_t i = 0; i < sizeof ro / sizeof *ro; i++)
		remount_ro(root, ro[i], MS_NOSUID | MS_NODEV | MS_NOEXEC);
	for (size_t i = 0; i < sizeof masked / sizeof *masked; i++)
		mask(root, masked[i]);
}

static void drop_all_caps(void)
{
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			fail("cannot drop capability", NULL);
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};
	if (syscall(SYS_capset, &h, d) < 0)
		fail("cannot clear capabilities", NULL);
}

static void join_pin(const char *pin, int type)
{
	if (!pin)
		return;
	int fd = open(pin, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, type) < 0)
		die(pin);
	close(fd);
}

static void __attribute__((noreturn)) reap_forever(void)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&all, &si) < 0)
			continue;
		if (si.si_signo == SIGCHLD)
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
	}
}

/* What `ps` inside shows for PID 1: no host paths. */
static void rename_self(char **argv, int argc)
{
	char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
	memset(start, 0, end - start);
	strcpy(start, "init");
	prctl(PR_SET_NAME, "init", 0, 0, 0);
}

static char **main_argv;
static int main_argc;

static int cmd_init(int argc, char **argv)
{
	const char *root = NULL, *uts = NULL, *ipc = NULL;
	struct mnt mounts[MAX_MOUNTS];
	int nm = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--root") && i + 1 < argc)
			root = argv[++i];
		else if (!strcmp(a, "--uts") && i + 1 < argc)
			uts = argv[++i];
		else if (!strcmp(a, "--ipc") && i + 1 < argc)
			ipc = argv[++i];
		else if (!strcmp(a, "--tmpfs") && i + 1 < argc && nm < MAX_MOUNTS)
			mounts[nm++] = (struct mnt){NULL, argv[++i], 0};
		else if (!strcmp(a, "--bind") && i + 3 < argc && nm < MAX_MOUNTS) {
			const char *mode = argv[i + 3];
			if (strcmp(mode, "ro") && strcmp(mode, "rw"))
				usage("--bind SRC DST ro|rw");
			mounts[nm++] = (struct mnt){argv[i + 1], argv[i + 2], !strcmp(mode, "ro")};
			i += 3;
		} else
			usage("init: bad argument (see the source's header)");
	}
	if (!root || root[0] != '/')
		usage("init needs --root /ABSOLUTE/PATH");
	join_pin(uts, CLONE_NEWUTS);
	join_pin(ipc, CLONE_NEWIPC);
	if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0)
		die("unshare");
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
		if (n > 0) {
			msg[n] = 0;
			fprintf(stderr, "%s: %s", prog, msg);
			waitpid(pid, NULL, 0);
			return 1;
		}
		printf("%d\n", (int)pid);
		return 0;
	}
	/* PID 1 of the prison */
	close(p[0]);
	report_fd = p[1];
	setsid();
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fail("cannot make mounts private", "/");
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		fail("cannot bind the root", root);
	int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		fail("cannot open the root", root);
	make_proc(rfd);
	make_dev(rfd);
	for (int i = 0; i < nm; i++) {
		const struct mnt *m = &mounts[i];
		if (!m->src) {
			mount_in(rfd, m->dst, 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
			continue;
		}
		struct stat st;
		if (stat(m->src, &st) < 0)
			fail("cannot bind", m->src);
		int fd = open_in_root(rfd, m->dst, !S_ISDIR(st.st_mode));
		if (fd < 0)
			fail("cannot make mount point", m->dst);
		char tp[64];
		fdpath(tp, sizeof tp, fd);
		if (mount(m->src, tp, NULL, MS_BIND | MS_REC, NULL) < 0)
			fail("cannot bind", m->src);
		close(fd);
		if (m->ro)
			remount(rfd, m->dst, MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV);
	}
	/* tmpfs mounts hold only what was bound on them: make them read-only now */
	for (int i = 0; i < nm; i++)
		if (!mounts[i].src)
			remount(rfd, mounts[i].dst, MS_RDONLY | MS_NOSUID | MS_NODEV);
	if (fchdir(rfd) < 0)
		fail("cannot enter", root);
	close(rfd);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root", root);
	if (umount2(".", MNT_DETACH) < 0)
		fail("cannot detach the host's tree", NULL);
	if (chdir("/") < 0)
		fail("chdir", "/");
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rename_self(main_argv, main_argc);
	drop_all_caps();
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	close(report_fd); /* EOF without a message: ready */
	syscall(SYS_close_range, 3, ~0U, 0);
	reap_forever();
}

/* ------------------------------------------------------------------ enter */

/* What a jail's root keeps (FreeBSD prison_priv_check's allow-list, in Linux terms). */
static const int keep_caps[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID,
	CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static int kept(int cap, int raw)
{
	if (cap == CAP_NET_RAW)
		return raw;
	for (size_t i = 0; i < sizeof keep_caps / sizeof *keep_caps; i++)
		if (keep_caps[i] == cap)
			return 1;
	return 0;
}

/* Denied with EPERM whatever the capabilities. */
static const int denied[] = {
#ifdef __NR_kexec_load
	__NR_kexec_load,
#endif
#ifdef __NR_kexec_file_load
	__NR_kexec_file_load,
#endif
	__NR_init_module, __NR_finit_module, __NR_delete_module,
	__NR_open_by_handle_at, __NR_name_to_handle_at,
	__NR_add_key, __NR_request_key, __NR_keyctl,
	__NR_setns, __NR_mount, __NR_umount2, __NR_pivot_root,
#ifdef __NR_move_mount
	__NR_move_mount, __NR_open_tree, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
	__NR_mount_setattr,
#endif
	__NR_bpf, __NR_perf_event_open, __NR_swapon, __NR_swapoff, __NR_reboot,
	__NR_settimeofday, __NR_clock_settime, __NR_acct, __NR_quotactl,
#ifdef __NR_quotactl_fd
	__NR_quotactl_fd,
#endif
	__NR_lookup_dcookie, __NR_userfaultfd, __NR_syslog, __NR_vhangup,
	__NR_sethostname, __NR_setdomainname, /* the hostname is the configuration's */
	/* io_uring would create sockets behind this filter's back (the kernel layer still sees them) */
	__NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
#ifdef __NR_iopl
	__NR_iopl, __NR_ioperm,
#endif
#ifdef __NR_uselib
	__NR_uselib,
#endif
};

#define MAX_FILTER 256

struct filter {
	struct sock_filter f[MAX_FILTER];
	unsigned short n;
};

static void emit(struct filter *p, struct sock_filter ins)
{
	if (p->n >= MAX_FILTER) {
		fprintf(stderr, "%s: seccomp filter too long\n", prog);
		exit(1);
	}
	p->f[p->n++] = ins;
}

#define STMT(code, k) ((struct sock_filter)BPF_STMT(code, k))
#define JUMP(code, k, jt, jf) ((struct sock_filter)BPF_JUMP(code, k, jt, jf))
#define RET_ERRNO(e) STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e))
#define RET_ALLOW STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define LOAD_NR STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LOAD_ARG(i) STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))

/* nr == N: the next instruction runs, else it is skipped */
static void if_nr(struct filter *p, int nr)
{
	emit(p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1));
}

/* flags argument (arg ARG) with CLONE_NEWUSER: EPERM, else allow */
static void deny_new_userns(struct filter *p, int nr, int arg)
{
	emit(p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 4));
	emit(p, LOAD_ARG(arg));
	emit(p, JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1));
	emit(p, RET_ERRNO(EPERM));
	emit(p, RET_ALLOW);
}

static void load_seccomp(int any_af)
{
	struct filter p = {.n = 0};
	emit(&p, STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
	emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_NR, 1, 0));
	emit(&p, RET_ERRNO(ENOSYS)); /* other ABIs (i386 on x86_64): nothing */
	emit(&p, LOAD_NR);
#ifdef __x86_64__
	emit(&p, JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1)); /* x32 */
	emit(&p, RET_ERRNO(ENOSYS));
#endif
	for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) {
		if_nr(&p, denied[i]);
		emit(&p, RET_ERRNO(EPERM));
	}
#ifdef __NR_clone3
	if_nr(&p, __NR_clone3); /* flags behind a pointer: libc falls back to clone */
	emit(&p, RET_ERRNO(ENOSYS));
#endif
	deny_new_userns(&p, __NR_unshare, 0);
	deny_new_userns(&p, __NR_clone, 0); /* flags are the first argument on x86_64 and arm64 */
	if (!any_af) {
		/* socket(): AF_UNIX, AF_INET, AF_INET6 and route netlink only */
		emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 9));
		emit(&p, LOAD_ARG(0));
		emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 5, 0));
		emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 4, 0));
		emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 3, 0));
		emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 3));
		emit(&p, LOAD_ARG(2));
		emit(&p, JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0 /* NETLINK_ROUTE */, 0, 1));
		emit(&p, RET_ALLOW);
		emit(&p, RET_ERRNO(EAFNOSUPPORT));
	}
	emit(&p, RET_ALLOW);
	struct sock_fprog fprog = {.len = p.n, .filter = p.f};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
		die("seccomp");
}

static void restrict_root(int raw)
{
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	for (int cap = 0; cap <= last; cap++)
		if (!kept(cap, raw) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			die("cannot drop a capability from the bounding set");
}

static void cut_caps(int raw)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};
	for (int cap = 0; cap < 64; cap++)
		if (kept(cap, raw)) {
			d[cap / 32].permitted |= 1u << (cap % 32);
			d[cap / 32].effective |= 1u << (cap % 32);
		}
	if (syscall(SYS_capset, &h, d) < 0)
		die("capset");
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

struct user {
	char name[256], home[PATH_MAX], shell[PATH_MAX];
	uid_t uid;
	gid_t gid;
};

/* The prison's own /etc/passwd (no NSS: this binary is static and the root is the prison's). */
static int find_user(const char *who, struct user *u)
{
	FILE *f = fopen("/etc/passwd", "re");
	if (!f)
		return -1;
	char line[2048];
	int found = 0;
	char *end;
	unsigned long want = strtoul(who, &end, 10);
	int numeric = *who && !*end;
	while (!found && fgets(line, sizeof line, f)) {
		char *fields[7] = {0};
		char *s = line, *save = NULL;
		line[strcspn(line, "\n")] = 0;
		int n = 0;
		for (char *tok = strsep(&s, ":"); tok && n < 7; tok = strsep(&s, ":"))
			fields[n++] = tok;
		(void)save;
		if (n < 7)
			continue;
		if (numeric ? strtoul(fields[2], NULL, 10) == want : !strcmp(fields[0], who)) {
			snprintf(u->name, sizeof u->name, "%s", fields[0]);
			u->uid = strtoul(fields[2], NULL, 10);
			u->gid = strtoul(fields[3], NULL, 10);
			snprintf(u->home, sizeof u->home, "%s", fields[5][0] ? fields[5] : "/");
			snprintf(u->shell, sizeof u->shell, "%s", fields[6][0] ? fields[6] : "/bin/sh");
			found = 1;
		}
	}
	fclose(f);
	if (!found && numeric) { /* a uid without an entry, as jexec allows */
		snprintf(u->name, sizeof u->name, "%lu", want);
		u->uid = want;
		u->gid = want;
		strcpy(u->home, "/");
		strcpy(u->shell, "/bin/sh");
		found = 1;
	}
	return found ? 0 : -1;
}

static int user_groups(const struct user *u, gid_t *out, int cap)
{
	int n = 0;
	out[n++] = u->gid;
	FILE *f = fopen("/etc/group", "re");
	if (!f)
		return n;
	char line[4096];
	while (n < cap && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *s = line, *fields[4] = {0};
		int k = 0;
		for (char *tok = strsep(&s, ":"); tok && k < 4; tok = strsep(&s, ":"))
			fields[k++] = tok;
		if (k < 4)
			continue;
		char *members = fields[3], *save = NULL;
		for (char *m = strtok_r(members, ",", &save); m; m = strtok_r(NULL, ",", &save))
			if (!strcmp(m, u->name)) {
				out[n++] = strtoul(fields[2], NULL, 10);
				break;
			}
	}
	fclose(f);
	return n;
}

static pid_t child;

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

int enter_main(int argc, char **argv)
{
	const char *user = NULL;
	int pid = 0, login = 0, raw = 0, any_af = 0;
	int i = 0;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		} else if (!strcmp(a, "--pid") && i + 1 < argc)
			pid = atoi(argv[++i]);
		else if (!strcmp(a, "--user") && i + 1 < argc)
			user = argv[++i];
		else if (!strcmp(a, "--login"))
			login = 1;
		else if (!strcmp(a, "--allow") && i + 1 < argc) {
			const char *f = argv[++i];
			raw = strchr(f, 'r') != NULL;
			any_af = strchr(f, 'a') != NULL;
		} else if (a[0] == '-')
			usage("enter: bad argument (see the source's header)");
		else
			break;
	}
	if (pid <= 0)
		usage("enter needs --pid INIT");
	int pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		die("the prison's init is gone");
	if (setns(pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
		die("cannot enter the prison's namespaces");
	close(pidfd);

	struct user u = {.name = "root", .home = "/", .shell = "/bin/sh", .uid = 0, .gid = 0};
	if (user && find_user(user, &u) < 0) {
		fprintf(stderr, "%s: no user %s in the prison\n", prog, user);
		return 1;
	}
	if (!user)
		find_user("0", &u); /* root's home and shell, where the prison says */
	char **cmd = argv + i;
	char *shell[2] = {u.shell, NULL};
	if (i >= argc)
		cmd = shell;

	sigset_t block, old;
	sigfillset(&block);
	sigprocmask(SIG_BLOCK, &block, &old);
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (user || login) {
			setenv("HOME", u.home, 1);
			setenv("USER", u.name, 1);
			setenv("LOGNAME", u.name, 1);
			if (login)
				setenv("SHELL", u.shell, 1);
		}
		if (chdir(login ? u.home : "/") < 0 && chdir("/") < 0)
			die("chdir");
		restrict_root(raw);
		load_seccomp(any_af);
		cut_caps(raw);
		if (user) {
			gid_t groups[64];
			int ng = user_groups(&u, groups, 64);
			if (setgroups(ng, groups) < 0 || setgid(u.gid) < 0 || setuid(u.uid) < 0)
				die("cannot become the user");
		}
		syscall(SYS_close_range, 3, ~0U, 0);
		execvp(cmd[0], cmd);
		int e = errno;
		fprintf(stderr, "%s: exec: %s: %s\n", prog, cmd[0], e == ENOENT ? "command not found" : strerror(e));
		_exit(e == ENOENT ? 127 : 126);
	}
	/* outside: forward what is meant for the command; a terminal's keys reach it directly */
	struct sigaction sa = {.sa_handler = forward};
	sigemptyset(&sa.sa_mask);
	int fwd[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};
	for (size_t k = 0; k < sizeof fwd / sizeof *fwd; k++)
		sigaction(fwd[k], &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	sigprocmask(SIG_SETMASK, &old, NULL);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	int sig = WTERMSIG(status);
	signal(sig, SIG_DFL);
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	sigprocmask(SIG_UNBLOCK, &one, NULL);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core of this process */
	kill(getpid(), sig);
	return 128 + sig;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	if (!strcmp(base ? base + 1 : argv[0], "prisonctl")) {
		prog = "prisonctl";
		return ctl_main(argc, argv);
	}
	main_argv = argv;
	main_argc = argc;
	if (argc < 2)
		usage("usage: prisonjail init|enter ...");
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 2, argv + 2);
	if (!strcmp(argv[1], "enter"))
		return enter_main(argc - 2, argv + 2);
	usage("usage: prisonjail init|enter ...");
	return 2;
}
