/* A confined prison's file system: its root, a fresh /proc, read-only,
 * a /dev of its own, the configured mounts, then pivot_root into the root.  Runs in init, in
 * the prison's new mount namespace, before anything of the prison runs.
 *
 * Mount targets are resolved one component at a time with RESOLVE_NO_SYMLINKS under the
 * root, so a symlink the prison planted in its root cannot send a mount onto the host's tree.
 * Read-only means the whole tree (mount_setattr with AT_RECURSIVE): a submount of a
 * read-only source would otherwise stay writable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "jail.h"

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

/* Bind what src_fd names onto what dst_fd names (both opened safely before: O_PATH). */
static void bind_fd(int src_fd, int dst_fd, unsigned long flags, const char *what)
{
	char sp[64], dp[64];
	fdpath(sp, sizeof sp, src_fd);
	fdpath(dp, sizeof dp, dst_fd);
	if (mount(sp, dp, NULL, MS_BIND | flags, NULL) < 0)
		fail("cannot bind", what);
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

/* Sets ATTR on the mount now on top at PATH and on every mount below it (a fresh lookup: an
 * fd opened before the mount would name the one underneath). */
static void set_attr(int root, const char *path, unsigned long long attr)
{
	int fd = open_beneath(root, path);
	struct mount_attr ma = {.attr_set = attr};
	if (fd < 0 || syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof ma) < 0)
		fail("cannot set mount flags on", path);
	close(fd);
}

#define RO (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)

/* A kernel file hidden under the prison's own /dev/null (never the host's: a chmod through the
 * masked name would change the host's node), read-only. */
static void mask(int root, const char *path)
{
	int fd = open_beneath(root, path), null = open_beneath(root, "dev/null");
	if (fd < 0 || null < 0) {
		if (fd >= 0)
			close(fd);
		if (null >= 0)
			close(null);
		if (fd < 0)
			return; /* the kernel has no such file: nothing to hide */
		fail("cannot find the prison's", "/dev/null");
	}
	char p[64], src[64];
	fdpath(p, sizeof p, fd);
	fdpath(src, sizeof src, null);
	if (mount(src, p, NULL, MS_BIND, NULL) < 0)
		fail("cannot mask", path);
	close(fd);
	close(null);
	set_attr(root, path, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
}

struct privfs;
static int fresh_dir(int root, struct privfs *priv, const char *path, mode_t mode, int create);

/* /dev: a tmpfs with device nodes of its own.  Bind mounts of the host's nodes would share
 * their inodes: a chmod inside would change the host's /dev/null for every host user. */
static void make_dev(int root, struct privfs *priv)
{
	static const struct {
		const char *name;
		unsigned major, minor;
	} nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
		     {"tty", 5, 0}};
	mount_in(root, "dev", 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
	int dev = open_in_root(root, "dev", 0);
	if (dev < 0)
		fail("cannot open", "dev");
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
		if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0 &&
		    errno != EEXIST)
			fail("cannot make device", nodes[i].name);
		if (fchmodat(dev, nodes[i].name, 0666, 0) < 0) /* past the umask */
			fail("cannot chmod device", nodes[i].name);
	}
	close(dev);
	mount_in(root, "dev/pts", 0, "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "newinstance,ptmxmode=0666,mode=0620,gid=5");
	fresh_dir(root, priv, "dev/shm", 01777, 1);
	dev = open_in_root(root, "dev", 0);
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

/* The prison's /proc, read-only as a whole: its kernel knobs (sys, sysrq-trigger, ...) and
 * the shared network stack's files under /proc/PID/net, which are the host's (iptables'
 * xt_recent lists, the NFS server's caches: written by whoever owns them, and the prison's
 * root is uid 0).  Writes through /proc/PID/fd/N reach their file, whose mount decides. */
static void make_proc(int root)
{
	static const char *masked[] = {"proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug",
				       "proc/latency_stats", "proc/kallsyms"};
	mount_in(root, "proc", 0, "proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	for (size_t i = 0; i < sizeof masked / sizeof *masked; i++)
		mask(root, masked[i]);
}

/* A mount source, opened without following any symbolic link on its way: a link a host user
 * (or a prison, through a directory it can write) planted in the path would otherwise show
 * the prison whatever it leads to, the host's / included. */
static int open_source(const char *src)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS};
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, src, &how, sizeof how);
	if (fd < 0 && errno == ELOOP)
		fail("a symbolic link on the way of mount source", src);
	if (fd < 0)
		fail("cannot bind", src);
	return fd;
}

static void bind_mount(int root, const struct mnt *m)
{
	if (!m->src) {
		mount_in(root, m->dst, 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
		return;
	}
	int sfd = open_source(m->src);
	struct stat st;
	if (fstat(sfd, &st) < 0)
		fail("cannot bind", m->src);
	int fd = open_in_root(root, m->dst, !S_ISDIR(st.st_mode));
	if (fd < 0)
		fail("cannot make mount point", m->dst);
	bind_fd(sfd, fd, MS_REC, m->src);
	close(fd);
	close(sfd);
	/* no set-uid programs and no devices from a host directory, read-only or not */
	set_attr(root, m->dst, m->ro ? RO : MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
}

/* The prison's private directories (/tmp, /var/tmp, /dev/shm, /run) are directories of one
 * tmpfs, each bound to its place, not a tmpfs each.  Every file system the kernel makes (a
 * superblock) takes a slot in every memory cgroup of the host, for as long as the host runs
 * (the shrinker map: mem_cgroup_css_online allocates one per cgroup, sized by the highest
 * slot ever used): with 10,000 prisons of six file systems, each new prison's memory cgroup
 * cost ~1 MB of kernel memory and most of the time of its mkdir.  The file system is made
 * detached (fsopen/fsmount), its subdirectories are bound, and its root, holding them all, is
 * then stowed under the prison's /proc, which covers it (stow_private).  A kernel that
 * refuses a bind from a detached mount (EINVAL) gets a tmpfs each, as before. */
struct privfs {
	int fd;    /* the detached mount, until stowed; -1: none */
	int binds; /* the kernel binds from it (else: a tmpfs each) */
};

static struct privfs private_fs(void)
{
	struct privfs p = {-1, 0};
	int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return p;
	if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0700", 0) == 0 &&
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		p.fd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	close(fs);
	p.binds = p.fd >= 0;
	return p;
}

/* The private file system's root, attached on top of PROC (an O_PATH fd of the directory the
 * prison's /proc is then mounted on, which covers it): in nobody's view, and never unmounted
 * (closing a detached mount unmounts it, and each unmount waits for an expedited RCU grace
 * period: a fifth more time per prison start here). */
static void stow_private(struct privfs *p, int proc)
{
	if (p->fd < 0)
		return;
	if (syscall(SYS_move_mount, p->fd, "", proc, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		fail("cannot stow the private file system under", "/proc");
	close(p->fd);
	p->fd = -1;
}

/* A fresh /proc (of the prison's PID namespace) on top of what PROC names, through the mount
 * API: the host's /proc, covered by the private file system now, resolves no /proc/self/fd. */
static void fresh_proc(int proc)
{
	int fs = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC), m = -1;
	if (fs >= 0 && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		m = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	if (m < 0 || syscall(SYS_move_mount, m, "", proc, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		fail("cannot mount", "/proc");
	close(m);
	close(fs);
}

/* A new directory of the private file system bound on DST (PATH's O_PATH fd); on a kernel
 * that binds nothing from a detached mount, the file system itself (binds is then 0). */
static void bind_private(struct privfs *p, const char *path, mode_t mode, int dst)
{
	char name[PATH_MAX];
	snprintf(name, sizeof name, "%s", path + strspn(path, "/"));
	for (char *c = name; *c; c++)
		if (*c == '/')
			*c = '-'; /* var/tmp: var-tmp */
	if (mkdirat(p->fd, name, mode) < 0 || fchmodat(p->fd, name, mode, 0) < 0) /* past the umask */
		fail("cannot make a private directory for", path);
	int src = openat(p->fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (src < 0)
		fail("cannot open a private directory for", path);
	char sp[64], dp[64];
	fdpath(sp, sizeof sp, src);
	fdpath(dp, sizeof dp, dst);
	int r = mount(sp, dp, NULL, MS_BIND, NULL), e = errno;
	close(src);
	if (r == 0)
		return;
	if (e != EINVAL) {
		errno = e;
		fail("cannot bind a private directory on", path);
	}
	/* this kernel binds nothing from a detached mount: the file system becomes this
	 * directory's own tmpfs (its root, emptied), and the next ones get a tmpfs each */
	p->binds = 0;
	if (unlinkat(p->fd, name, AT_REMOVEDIR) < 0 || fchmodat(p->fd, ".", mode, 0) < 0 ||
	    syscall(SYS_move_mount, p->fd, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		fail("cannot mount a tmpfs on", path);
	close(p->fd);
	p->fd = -1;
}

/* A fresh, empty directory of the prison's own on PATH: a directory of the private file
 * system, or a tmpfs of its own (see private_fs).  Never through a link at its end (a
 * /var/run that is a link to /run is left to it).  CREATE: PATH is made when missing; else a
 * missing PATH is left alone (0). */
static int fresh_dir(int root, struct privfs *priv, const char *path, mode_t mode, int create)
{
	int fd = create ? open_in_root(root, path, 0) : open_beneath(root, path);
	if (fd < 0) {
		if (!create && (errno == ENOENT || errno == ELOOP))
			return 0;
		fail(create ? "cannot make mount point" : "cannot find", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		close(fd);
		return 0;
	}
	if (priv->binds) {
		bind_private(priv, path, mode, fd);
	} else {
		char p[64], data[32];
		fdpath(p, sizeof p, fd);
		snprintf(data, sizeof data, "mode=%o", (unsigned)mode);
		if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, data) < 0)
			fail("cannot mount a tmpfs on", path);
	}
	close(fd);
	return 1;
}

/* A private /run (with /run/lock, 1777, as Debian's), made before the mounts that go into it. */
static void fresh_run(int root, struct privfs *priv)
{
	fresh_dir(root, priv, "run", 0755, 1);
	int run = open_in_root(root, "run", 0);
	if (run < 0)
		fail("cannot open", "/run");
	if (mkdirat(run, "lock", 01777) < 0 || fchmodat(run, "lock", 01777, 0) < 0)
		fail("cannot make", "/run/lock");
	close(run);
}

/* The prison's /etc/hosts: the daemon's file for it, read-only, over the root's (or the host's). */
static void hosts_file(int root, int hosts_fd, int make)
{
	int fd = open_beneath(root, "etc");
	if (fd < 0)
		fail("cannot find", "/etc");
	close(fd);
	/* a confined root's is made if missing (the prison's own tree); never one in the host's */
	fd = make ? open_in_root(root, "etc/hosts", 1) : open_beneath(root, "etc/hosts");
	if (fd < 0)
		fail("cannot find", "/etc/hosts");
	bind_fd(hosts_fd, fd, 0, "/etc/hosts");
	close(fd);
	close(hosts_fd);
	set_attr(root, "etc/hosts", RO);
}

/* A prison without a root of its own (isolated, not confined): the host's tree as it is, but a
 * fresh /proc of its PID namespace, and private /run, /tmp, /var/tmp, /dev/shm (and /dev/mqueue of
 * its IPC namespace), then the configured mounts.  Mount events of the host still reach it
 * (slave), none of its own reach the host.  Mount sources are opened before anything is hidden
 * (the daemon's public directory lies under /run). */
void isolate(const struct mnt *mounts, int n, const char *hosts, int ipc)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		fail("cannot make mounts slaves", "/");
	int src[64];
	for (int i = 0; i < n && i < 64; i++) {
		src[i] = mounts[i].src ? open_source(mounts[i].src) : -1;
	}
	int hfd = hosts ? open_source(hosts) : -1;
	int rfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		fail("cannot open", "/");
	int pfd = open_beneath(rfd, "proc");
	char p[64];
	if (pfd < 0)
		fail("cannot find", "/proc");
	struct privfs priv = private_fs();
	fresh_dir(rfd, &priv, "tmp", 01777, 0);
	fresh_dir(rfd, &priv, "var/tmp", 01777, 0);
	fresh_dir(rfd, &priv, "dev/shm", 01777, 0);
	fresh_run(rfd, &priv);
	fresh_dir(rfd, &priv, "var/run", 0755, 0); /* only where it is not Debian's link to /run */
	stow_private(&priv, pfd); /* the host's /proc served the binds (/proc/self/fd): now covered */
	fresh_proc(pfd);
	close(pfd);
	if (ipc) {
		int q = open_beneath(rfd, "dev/mqueue");
		if (q >= 0) {
			fdpath(p, sizeof p, q);
			if (mount("mqueue", p, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
				fail("cannot mount", "/dev/mqueue");
			close(q);
		}
	}
	for (int i = 0; i < n; i++) {
		if (!mounts[i].src) {
			mount_in(rfd, mounts[i].dst, 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
			continue;
		}
		struct stat st;
		if (fstat(src[i], &st) < 0)
			fail("cannot bind", mounts[i].src);
		/* the target exists on the host, or lies in a private tmpfs made above */
		int fd = open_beneath(rfd, mounts[i].dst);
		if (fd < 0) {
			const char *d = mounts[i].dst + strspn(mounts[i].dst, "/");
			if (strncmp(d, PD_MADE_UNDER_RUN, strlen(PD_MADE_UNDER_RUN)) &&
			    strncmp(d, PD_MADE_UNDER_TMP, strlen(PD_MADE_UNDER_TMP)) &&
			    strncmp(d, PD_MADE_UNDER_VAR_TMP, strlen(PD_MADE_UNDER_VAR_TMP)))
				fail("no such mount point on the host:", mounts[i].dst);
			fd = open_in_root(rfd, d, !S_ISDIR(st.st_mode));
		}
		if (fd < 0)
			fail("cannot make mount point", mounts[i].dst);
		bind_fd(src[i], fd, MS_REC, mounts[i].src);
		close(fd);
		close(src[i]);
		set_attr(rfd, mounts[i].dst, mounts[i].ro ? RO : MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	}
	if (hosts)
		hosts_file(rfd, hfd, 0);
	close(rfd);
	if (chdir("/") < 0)
		fail("chdir", "/");
}

void confine(const char *root, const struct mnt *mounts, int n, const char *hosts)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fail("cannot make mounts private", "/");
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		fail("cannot bind the root", root);
	int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		fail("cannot open the root", root);
	/* device nodes left in the root's tree (a debootstrap root has some in its /dev) are
	 * inert: /dev is mounted over, and nothing else in the root may be a device */
	set_attr(rfd, "/", MOUNT_ATTR_NODEV);
	struct privfs priv = private_fs();
	make_dev(rfd, &priv); /* before /proc: its masks are the prison's own /dev/null */
	fresh_run(rfd, &priv); /* before the mounts: the daemon's public directory goes into it */
	int pfd = open_in_root(rfd, "proc", 0);
	if (pfd < 0)
		fail("cannot make mount point", "proc");
	stow_private(&priv, pfd); /* under the prison's /proc, made next */
	close(pfd);
	make_proc(rfd);
	for (int i = 0; i < n; i++)
		bind_mount(rfd, &mounts[i]);
	/* tmpfs mounts hold only what was bound on them: read-only now */
	for (int i = 0; i < n; i++)
		if (!mounts[i].src)
			set_attr(rfd, mounts[i].dst, RO);
	if (hosts)
		hosts_file(rfd, open_source(hosts), 1);
	if (fchdir(rfd) < 0)
		fail("cannot enter", root);
	close(rfd);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root", root);
	if (umount2(".", MNT_DETACH) < 0)
		fail("cannot detach the host's tree", NULL);
	if (chdir("/") < 0)
		fail("chdir", "/");
}

void make_rundirs(char *const *dirs, int n, const char *user)
{
	uid_t uid = 0;
	gid_t gid = 0;
	if (n && user && user_ids(user, &uid, &gid) < 0) {
		errno = ENOENT;
		fail("runtime_directory: no such user in the prison:", user);
	}
	int run = n ? open("/run", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (n && run < 0)
		fail("cannot open", "/run");
	for (int i = 0; i < n; i++) {
		/* its parents are made (root's, 0755) or taken as they are; it must be new: never
		 * /run itself, /run/lock or a mount point given away to the user */
		char parent[PATH_MAX];
		snprintf(parent, sizeof parent, "%s", dirs[i]);
		char *slash = strrchr(parent, '/');
		const char *last = slash ? slash + 1 : parent;
		int pfd = slash ? (*slash = 0, open_in_root(run, parent, 0)) : dup(run);
		if (pfd < 0)
			fail("cannot make /run/", dirs[i]);
		if (!*last || !strcmp(last, ".") || !strcmp(last, "..") || mkdirat(pfd, last, 0700) < 0) {
			if (errno == EEXIST)
				fail("runtime_directory: already there, not made for the prison: /run/", dirs[i]);
			fail("cannot make /run/", dirs[i]);
		}
		struct open_how how = {.flags = O_PATH | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY,
				       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH};
		int fd = (int)syscall(SYS_openat2, pfd, last, &how, sizeof how);
		close(pfd);
		if (fd < 0)
			fail("cannot open /run/", dirs[i]);
		char p[64];
		fdpath(p, sizeof p, fd);
		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0 || chmod(p, 0755) < 0)
			fail("cannot set the owner and mode of /run/", dirs[i]);
		close(fd);
	}
	if (run >= 0)
		close(run);
}
