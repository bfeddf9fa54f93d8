"""A small eBPF assembler: instructions as Python calls, labels resolved at the end.  Pure.

No LLVM or bcc at run time: the programs in programs.py are written with these.
Encoding (include/uapi/linux/bpf.h): struct bpf_insn { u8 code; u8 dst:4, src:4; s16 off; s32 imm; }.
"""
from __future__ import annotations

import struct
from typing import Self

# instruction classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# sizes and modes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
IMM, MEM, ATOMIC = 0x00, 0x60, 0xC0
# ALU operations and sources
ADD, SUB, AND, OR, LSH, RSH, MOV, END = 0x00, 0x10, 0x50, 0x40, 0x60, 0x70, 0xB0, 0xD0
K, X = 0x00, 0x08
TO_BE = 0x08  # BPF_END with BPF_TO_BE: to big endian (a swap on the little-endian hosts we run on)
# jumps
JA, JEQ, JGT, JGE, JSET, JNE, CALL, EXIT = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x80, 0x90
# atomic operations (the imm of a BPF_STX | BPF_ATOMIC instruction; kernel 5.12+)
FETCH, CMPXCHG = 0x01, 0xF0
PSEUDO_MAP_FD = 1

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
SIZES = {1: B, 2: H, 4: W, 8: DW}


class Program:
    def __init__(self):
        self.insns: list[list] = []  # [code, dst, src, off, imm]; off may be a label name
        self.labels: dict[str, int] = {}

    def _emit(self, code, dst=0, src=0, off=0, imm=0) -> Self:
        self.insns.append([code, dst, src, off, imm])
        return self

    def label(self, name: str) -> Self:
        if name in self.labels:
            raise ValueError(f"label {name} defined twice")
        self.labels[name] = len(self.insns)
        return self

    # moves and arithmetic (64-bit)
    def mov(self, dst, imm): return self._emit(ALU64 | MOV | K, dst, 0, 0, _s32(imm))  # sign-extends
    def movr(self, dst, src): return self._emit(ALU64 | MOV | X, dst, src)
    def add(self, dst, imm): return self._emit(ALU64 | ADD | K, dst, 0, 0, imm)
    def rsh(self, dst, imm): return self._emit(ALU64 | RSH | K, dst, 0, 0, imm)
    def addr(self, dst, src): return self._emit(ALU64 | ADD | X, dst, src)
    def and_(self, dst, imm): return self._emit(ALU64 | AND | K, dst, 0, 0, imm)
    def lsh(self, dst, imm): return self._emit(ALU64 | LSH | K, dst, 0, 0, imm)
    def or_(self, dst, imm): return self._emit(ALU64 | OR | K, dst, 0, 0, imm)

    def be16(self, dst):
        """dst = htons(dst & 0xffff): BPF_END takes the width from imm, 16 here."""
        return self._emit(ALU | END | TO_BE, dst, 0, 0, 16)

    # memory
    def ldx(self, size, dst, src, off): return self._emit(LDX | MEM | SIZES[size], dst, src, off)
    def stx(self, size, dst, off, src): return self._emit(STX | MEM | SIZES[size], dst, src, off)

    def fetch_add(self, size, dst, off, src):
        """Atomically *(dst + off) += src, and src = the value before (BPF_ATOMIC, BPF_ADD | BPF_FETCH).
        Only 4 and 8 bytes exist."""
        if size not in (4, 8):
            raise ValueError("atomic operations are 4 or 8 bytes wide")
        return self._emit(STX | ATOMIC | SIZES[size], dst, src, off, ADD | FETCH)

    def cmpxchg(self, size, dst, off, src):
        """Atomically: if *(dst + off) == r0 then *(dst + off) = src; r0 = the value before, always."""
        if size not in (4, 8):
            raise ValueError("atomic operations are 4 or 8 bytes wide")
        return self._emit(STX | ATOMIC | SIZES[size], dst, src, off, CMPXCHG | FETCH)

    def st(self, size, dst, off, imm):
        """Store an immediate.  Not into a program's context (the verifier refuses BPF_ST there)."""
        return self._emit(ST | MEM | SIZES[size], dst, 0, off, imm)

    def ld_map_fd(self, dst, fd: int):
        self._emit(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, fd)
        return self._emit(0, 0, 0, 0, 0)

    # control flow; 32-bit compares for addresses (a 64-bit JEQ sign-extends its immediate)
    def jmp(self, target): return self._emit(JMP | JA, 0, 0, target)
    def jeq(self, dst, imm, target): return self._emit(JMP | JEQ | K, dst, 0, target, imm)
    def jne(self, dst, imm, target): return self._emit(JMP | JNE | K, dst, 0, target, imm)
    def jset(self, dst, imm, target): return self._emit(JMP | JSET | K, dst, 0, target, imm)
    def jeqr(self, dst, src, target): return self._emit(JMP | JEQ | X, dst, src, target)
    def jner(self, dst, src, target): return self._emit(JMP | JNE | X, dst, src, target)
    def jeq32(self, dst, imm, target): return self._emit(JMP32 | JEQ | K, dst, 0, target, _s32(imm))
    def jne32(self, dst, imm, target): return self._emit(JMP32 | JNE | K, dst, 0, target, _s32(imm))
    def jeq32r(self, dst, src, target): return self._emit(JMP32 | JEQ | X, dst, src, target)
    def jne32r(self, dst, src, target): return self._emit(JMP32 | JNE | X, dst, src, target)
    def call(self, helper: int): return self._emit(JMP | CALL, 0, 0, 0, helper)
    def exit(self): return self._emit(JMP | EXIT)

    def ret(self, value: int):
        return self.mov(R0, value).exit()

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (code, dst, src, off, imm) in enumerate(self.insns):
            if isinstance(off, str):
                if off not in self.labels:
                    raise ValueError(f"undefined label {off}")
                off = self.labels[off] - i - 1
            out += struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
        return bytes(out)

    def __len__(self) -> int:
        return len(self.insns)


def _s32(value: int) -> int:
    """An unsigned 32-bit constant as the signed immediate the encoding holds."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value
