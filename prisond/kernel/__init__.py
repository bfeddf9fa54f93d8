"""The kernel layer: cgroup BPF programs assembled and loaded from Python (no LLVM): the
assembler (asm), the bpf(2) system call (syscall), the programs (programs), and the
per-prison enforcement built on them (enforce)."""
