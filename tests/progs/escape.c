/* escape: what a root inside a confined prison tries, one attempt per run, with raw system
 * calls (built static, so no shim is in the way).  Prints "ok" when the call worked, else
 * "err NAME" with the errno's name; for the climbing attempts, what it could read. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"


/* Reads FILE after the climb; prints its first line or the error. */
static int read_after_climb(const char *file)
{
	int fd = open(file, O_RDONLY);
	if (fd < 0)
		return report(-1);
	char buf[128] = {0};
	ssize_t n = read(fd, buf, sizeof buf - 1);
	buf[n > 0 ? n : 0] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("read %s\n", buf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: escape ATTEMPT [ARG]\n");
		return 2;
	}
	const char *a = argv[1], *arg = argc > 2 ? argv[2] : "";
	if (!strcmp(a, "mount"))
		return report(mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
	if (!strcmp(a, "umount-proc"))
		return report(umount2("/proc", MNT_DETACH));
	if (!strcmp(a, "mknod-block"))
		return report(mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0)));
	if (!strcmp(a, "init-module"))
		return report(syscall(SYS_init_module, "\x7f" "ELF", 4, ""));
	if (!strcmp(a, "finit-module")) {
		int fd = open("/dev/null", O_RDONLY);
		return report(syscall(SYS_finit_module, fd, "", 0));
	}
	if (!strcmp(a, "settime")) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		return report(clock_settime(CLOCK_REALTIME, &ts));
	}
	if (!strcmp(a, "sethostname"))
		return report(sethostname("evil", 4));
	if (!strcmp(a, "raw-socket"))
		return report(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
	if (!strcmp(a, "packet-socket"))
		return report(socket(AF_PACKET, SOCK_RAW, 0));
	if (!strcmp(a, "chroot-climb")) { /* the double-chroot trick */
		mkdir("/tmp/cell", 0700);
		if (chroot("/tmp/cell") < 0)
			return report(-1);
		for (int i = 0; i < 64; i++)
			if (chdir("..") < 0)
				return report(-1);
		if (chroot(".") < 0)
			return report(-1);
		return read_after_climb(arg);
	}
	if (!strcmp(a, "dotdot-walk")) {
		for (int i = 0; i < 64; i++)
			if (chdir("..") < 0)
				return report(-1);
		return read_after_climb(arg);
	}
	if (!strcmp(a, "read"))
		return read_after_climb(arg);
	if (!strcmp(a, "kill"))
		return report(kill(atoi(arg), SIGKILL));
	if (!strcmp(a, "ptrace"))
		return report(ptrace(PTRACE_ATTACH, atoi(arg), 0, 0));
	if (!strcmp(a, "unshare-user"))
		return report(unshare(CLONE_NEWUSER));
	if (!strcmp(a, "open-by-handle")) {
		struct {
			unsigned int bytes;
			int type;
			unsigned char f[8];
		} h = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}}; /* the shocker exploit's: inode 2, the root */
		return report(syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY));
	}
	if (!strcmp(a, "setns")) {
		int fd = open("/proc/self/ns/uts", O_RDONLY); /* any namespace fd will do */
		if (fd < 0)
			return report(-1);
		return report(setns(fd, 0));
	}
	if (!strcmp(a, "bpf")) {
		union bpf_attr attr;
		memset(&attr, 0, sizeof attr);
		attr.map_type = BPF_MAP_TYPE_ARRAY;
		attr.key_size = 4;
		attr.value_size = 4;
		attr.max_entries = 1;
		return report(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
	}
	if (!strcmp(a, "core-pattern")) {
		int fd = open("/proc/sys/kernel/core_pattern", O_WRONLY);
		if (fd < 0)
			return report(-1);
		return report(write(fd, "|/tmp/evil", 10));
	}
	if (!strcmp(a, "reboot"))
		return report(syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc /* LINUX_REBOOT_CMD_CAD_ON */, 0));
	fprintf(stderr, "escape: unknown attempt %s\n", a);
	return 2;
}
