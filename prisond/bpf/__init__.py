"""The kernel layer's BPF: an assembler (asm), the bpf(2) system call (sys), the programs
(programs), and the per-prison enforcement built on them (enforce)."""
