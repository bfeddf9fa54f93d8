/* What every process of a prison is held to, set once on the prison's init and inherited by
 * everything it starts: a Landlock domain, a seccomp filter, and for a confined prison the
 * capability bounding set of a jail's root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"

#if defined(__x86_64__)
#define ARCH_NR AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH_NR AUDIT_ARCH_AARCH64
#else
#error "prisonjail: add this architecture's AUDIT_ARCH"
#endif

#ifndef SOCK_PACKET
#define SOCK_PACKET 10
#endif

int parse_allow(const char *flags)
{
	int allow = 0;
	for (; flags && *flags; flags++)
		allow |= *flags == PD_ALLOW_RAW	    ? ALLOW_RAW
			 : *flags == PD_ALLOW_ANYAF ? ALLOW_ANYAF
			 : *flags == PD_ALLOW_URING ? ALLOW_URING
						    : 0;
	return allow;
}

/* ------------------------------------------------------------------ capabilities */

/* What a jail's root keeps (FreeBSD prison_priv_check's allow-list, in Linux terms). */
static const int keep_caps[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID,
	CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static int kept(int cap, int allow)
{
	if (cap == CAP_NET_RAW)
		return allow & ALLOW_RAW;
	for (size_t i = 0; i < sizeof keep_caps / sizeof *keep_caps; i++)
		if (keep_caps[i] == cap)
			return 1;
	return 0;
}

void restrict_caps(int allow)
{
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	for (int cap = 0; cap <= last; cap++)
		if (!kept(cap, allow) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			fail("cannot drop a capability from the bounding set", NULL);
	/* The process's own sets too: root's children get the bounding set at exec anyway, but
	 * init itself must hold no more than a jail's root while it serves. */
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};
	for (int cap = 0; cap < 64; cap++)
		if (kept(cap, allow)) {
			d[cap / 32].permitted |= 1u << (cap % 32);
			d[cap / 32].effective |= 1u << (cap % 32);
		}
	if (syscall(SYS_capset, &h, d) < 0)
		fail("cannot set capabilities", NULL);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

/* ------------------------------------------------------------------ seccomp
 *
 * Classic BPF written with labels: a jump names where it goes and the offsets are computed
 * when the program is finished, so no offset is ever counted by hand.  Every jump goes
 * forward (as classic BPF requires) and at most 255 instructions (checked).
 */

#define MAX_FILTER 512
#define MAX_LABELS 32

enum { L_ALLOW, L_EPERM, L_ENOSYS, L_EAFNOSUPPORT, L_SOCKET_INET, L_SOCKET_NETLINK, L_NOT_IOCTL,
       L_NOT_UNSHARE, L_NOT_CLONE, L_NOT_PRLIMIT, L_NOT_SETPRIORITY, L_NOT_IOPRIO };

struct filter {
	struct sock_filter f[MAX_FILTER];
	int jt[MAX_FILTER], jf[MAX_FILTER]; /* label numbers, -1: fall through */
	int at[MAX_LABELS];                 /* where each label was placed, -1: not yet */
	unsigned short n;
};

static void emit(struct filter *p, struct sock_filter ins, int jt, int jf)
{
	if (p->n >= MAX_FILTER)
		fail("seccomp filter too long", NULL);
	p->jt[p->n] = jt;
	p->jf[p->n] = jf;
	p->f[p->n++] = ins;
}

static void stmt(struct filter *p, unsigned short code, unsigned k)
{
	emit(p, (struct sock_filter)BPF_STMT(code, k), -1, -1);
}

/* if (A == k) goto jt else goto jf; a label of -1 falls through */
static void jeq(struct filter *p, unsigned k, int jt, int jf)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k, 0, 0), jt, jf);
}

static void jset(struct filter *p, unsigned k, int jt, int jf)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, k, 0, 0), jt, jf);
}

static void jge(struct filter *p, unsigned k, int jt, int jf)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, k, 0, 0), jt, jf);
}

static void label(struct filter *p, int l)
{
	p->at[l] = p->n;
}

static void finish(struct filter *p)
{
	for (int i = 0; i < p->n; i++) {
		int targets[2] = {p->jt[i], p->jf[i]};
		unsigned char *offs[2] = {&p->f[i].jt, &p->f[i].jf};
		for (int t = 0; t < 2; t++) {
			if (targets[t] < 0)
				continue;
			int off = p->at[targets[t]] - i - 1;
			if (p->at[targets[t]] < 0 || off < 0 || off > 255)
				fail("seccomp filter: bad jump (a bug)", NULL);
			*offs[t] = (unsigned char)off;
		}
	}
}

#define LOAD(field) stmt(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
/* the low 32 bits of an argument: socket's family and type and ioctl's request are ints */
#define LOAD_ARG(i) stmt(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))

/* Denied with EPERM whatever the capabilities (confined prisons). */
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
	__NR_move_mount, __NR_open_tree, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
	__NR_mount_setattr,
	__NR_bpf, __NR_perf_event_open, __NR_swapon, __NR_swapoff, __NR_reboot,
	__NR_settimeofday, __NR_clock_settime, __NR_acct, __NR_quotactl,
#ifdef __NR_quotactl_fd
	__NR_quotactl_fd,
#endif
	__NR_lookup_dcookie, __NR_userfaultfd, __NR_syslog, __NR_vhangup,
	__NR_sethostname, __NR_setdomainname, /* the hostname is the configuration's */
#ifdef __NR_iopl
	__NR_iopl, __NR_ioperm,
#endif
#ifdef __NR_uselib
	__NR_uselib,
#endif
};

static void build(struct filter *p, int allow, int confined)
{
	for (int i = 0; i < MAX_LABELS; i++)
		p->at[i] = -1;
	p->n = 0;
	LOAD(arch);
	jeq(p, ARCH_NR, -1, L_ENOSYS); /* other ABIs (i386 on x86_64): nothing at all */
	LOAD(nr);
#ifdef __x86_64__
	jge(p, 0x40000000, L_ENOSYS, -1); /* the x32 ABI */
#endif
	if (confined) {
		for (size_t i = 0; i < sizeof denied / sizeof *denied; i++)
			jeq(p, denied[i], L_EPERM, -1);
		jeq(p, __NR_clone3, L_ENOSYS, -1); /* flags behind a pointer: libc falls back to clone */
	}
	/* io_uring, in every prison unless allow.io_uring: IORING_OP_SOCKET makes sockets without
	 * the socket() call judged below (the kernel layer still sees their addresses) */
	if (!(allow & ALLOW_URING)) {
		jeq(p, __NR_io_uring_setup, L_EPERM, -1);
		jeq(p, __NR_io_uring_enter, L_EPERM, -1);
		jeq(p, __NR_io_uring_register, L_EPERM, -1);
	}
	/* the terminal: no typing into it (TIOCSTI) and no console tricks (TIOCLINUX) */
	jeq(p, __NR_ioctl, -1, L_NOT_IOCTL);
	LOAD_ARG(1);
	jeq(p, TIOCSTI, L_EPERM, -1);
	jeq(p, TIOCLINUX, L_EPERM, L_ALLOW);
	label(p, L_NOT_IOCTL);
	/* Another process's limits, or the priorities of a whole group or user: Landlock scopes
	 * signals and ptrace, not these, so a prison could throttle or starve (RLIMIT_CPU kills)
	 * processes of another prison or of the host that share its uid.  prlimit only on itself
	 * (pid 0); setpriority and ioprio_set only by process (a thread of its own, say). */
	jeq(p, __NR_prlimit64, -1, L_NOT_PRLIMIT);
	LOAD_ARG(0);
	jeq(p, 0, L_ALLOW, L_EPERM);
	label(p, L_NOT_PRLIMIT);
	jeq(p, __NR_setpriority, -1, L_NOT_SETPRIORITY);
	LOAD_ARG(0);
	jeq(p, 0 /* PRIO_PROCESS */, L_ALLOW, L_EPERM);
	label(p, L_NOT_SETPRIORITY);
	jeq(p, __NR_ioprio_set, -1, L_NOT_IOPRIO);
	LOAD_ARG(0);
	jeq(p, 1 /* IOPRIO_WHO_PROCESS */, L_ALLOW, L_EPERM);
	label(p, L_NOT_IOPRIO);
	if (confined) {
		/* unshare(flags) / clone(flags, ...): no new user namespace (flags are the first
		 * argument on x86_64 and arm64) */
		jeq(p, __NR_unshare, -1, L_NOT_UNSHARE);
		LOAD_ARG(0);
		jset(p, CLONE_NEWUSER, L_EPERM, L_ALLOW);
		label(p, L_NOT_UNSHARE);
		jeq(p, __NR_clone, -1, L_NOT_CLONE);
		LOAD_ARG(0);
		jset(p, CLONE_NEWUSER, L_EPERM, L_ALLOW);
		label(p, L_NOT_CLONE);
	}
	/* socket(): never SOCK_PACKET (a link-layer socket behind an inet family: raw sockets mean
	 * IP raw sockets); other families than unix, inet, inet6 and route netlink only with
	 * allow.socket_af */
	jeq(p, __NR_socket, -1, L_ALLOW);
	LOAD_ARG(0);
	jeq(p, AF_INET, L_SOCKET_INET, -1);
	jeq(p, AF_INET6, L_SOCKET_INET, -1);
	jeq(p, AF_UNIX, L_ALLOW, -1);
	if (allow & ALLOW_ANYAF)
		stmt(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	else {
		jeq(p, AF_NETLINK, L_SOCKET_NETLINK, L_EAFNOSUPPORT);
		label(p, L_SOCKET_NETLINK);
		LOAD_ARG(2);
		jeq(p, NETLINK_ROUTE, L_ALLOW, L_EAFNOSUPPORT);
	}
	label(p, L_SOCKET_INET);
	LOAD_ARG(1);
	stmt(p, BPF_ALU | BPF_AND | BPF_K, 0xf); /* the type without SOCK_NONBLOCK / SOCK_CLOEXEC */
	jeq(p, SOCK_PACKET, L_EAFNOSUPPORT, L_ALLOW);
	label(p, L_EAFNOSUPPORT);
	stmt(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT);
	label(p, L_EPERM);
	stmt(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	label(p, L_ENOSYS);
	stmt(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
	label(p, L_ALLOW);
	stmt(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	finish(p);
}

void restrict_syscalls(int allow, int confined)
{
	static struct filter p;
	build(&p, allow, confined);
	struct sock_fprog prog = {.len = p.n, .filter = p.f};
	/* without no_new_privs: set-uid programs inside keep working, within the bounding set
	 * (installing a filter without it needs CAP_SYS_ADMIN, which init still has here) */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		fail("cannot load the seccomp filter", NULL);
}

/* ------------------------------------------------------------------ Landlock
 *
 * The headers of Debian 12 predate scopes (ABI 6, Linux 6.12): the structure and flags are
 * spelled out here.  A process in a Landlock domain cannot ptrace (nor read the memory or
 * environment of) a process outside it or in a sibling domain; with scopes it can neither
 * connect to an abstract unix socket made outside its domain nor signal a process outside
 * it.  Every process of a prison descends from its init, so they all share one domain:
 * they reach each other, and nothing else.
 */

struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

struct ll_path_beneath {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)
#define LL_ACCESS_FS_MAKE_BLOCK (1ULL << 11)
#define LL_RULE_PATH_BENEATH 1

int restrict_landlock(int max_abi)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
	if (abi <= 0)
		return 0; /* no Landlock in this kernel (or disabled): PID namespaces are all there is */
	if (max_abi > 0 && abi > max_abi)
		abi = max_abi;
	struct ll_ruleset_attr attr = {0};
	size_t size = sizeof attr;
	if (abi >= 6) {
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
	} else {
		/* No scopes: a domain that handles one filesystem right and grants it everywhere
		 * restricts nothing on the filesystem, but its ptrace rule applies. */
		attr.handled_access_fs = LL_ACCESS_FS_MAKE_BLOCK;
		size = offsetof(struct ll_ruleset_attr, handled_access_net);
	}
	int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (fd < 0)
		fail("cannot create the Landlock ruleset", NULL);
	if (abi < 6) {
		struct ll_path_beneath rule = {.allowed_access = LL_ACCESS_FS_MAKE_BLOCK,
					       .parent_fd = open("/", O_PATH | O_CLOEXEC)};
		if (rule.parent_fd < 0 || syscall(SYS_landlock_add_rule, fd, LL_RULE_PATH_BENEATH, &rule, 0) < 0)
			fail("cannot add the Landlock rule", NULL);
		close(rule.parent_fd);
	}
	/* without no_new_privs: allowed to a process with CAP_SYS_ADMIN, which init still has */
	if (syscall(SYS_landlock_restrict_self, fd, 0) < 0)
		fail("cannot enter the Landlock domain", NULL);
	close(fd);
	return (int)abi;
}
