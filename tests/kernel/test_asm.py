import struct

import pytest

from prisond.kernel import asm


def insns(prog):
    raw = prog.assemble()
    return [struct.unpack("<BBhi", raw[i:i + 8]) for i in range(0, len(raw), 8)]


def test_mov_exit_encoding():
    p = asm.Program().mov(asm.R0, 1).exit()
    assert insns(p) == [(0xB7, 0x00, 0, 1), (0x95, 0x00, 0, 0)]


def test_jumps_resolve_to_relative_offsets():
    p = asm.Program().jeq(asm.R1, 0, "end").mov(asm.R0, 2).label("end").exit()
    assert insns(p)[0] == (0x15, 0x01, 1, 0)  # skip one instruction


def test_backward_labels_and_undefined_ones():
    p = asm.Program().label("top").jmp("top")
    assert insns(p)[0][2] == -1
    with pytest.raises(ValueError, match="undefined label"):
        asm.Program().jmp("nowhere").assemble()
    with pytest.raises(ValueError, match="twice"):
        asm.Program().label("a").label("a")


def test_ld_map_fd_takes_two_slots_with_the_pseudo_flag():
    p = asm.Program().ld_map_fd(asm.R1, 7)
    assert insns(p) == [(0x18, 0x11, 0, 7), (0, 0, 0, 0)]


def test_32_bit_compares_keep_the_high_bit():
    """0xFFFF0000 must compare as a 32-bit value: JMP32 with the immediate as stored."""
    code, regs, off, imm = insns(asm.Program().jeq32(asm.R2, 0xFFFF0000, "x").label("x"))[0]
    assert code == asm.JMP32 | asm.JEQ | asm.K and imm & 0xFFFFFFFF == 0xFFFF0000


def test_registers_in_the_right_nibbles():
    code, regs, off, imm = insns(asm.Program().stx(4, asm.R6, 8, asm.R1))[0]
    assert regs == (asm.R1 << 4) | asm.R6 and off == 8


def test_atomic_fetch_add_and_cmpxchg_encoding():
    """BPF_STX | BPF_ATOMIC | BPF_DW (0xdb); the operation in imm: BPF_ADD | BPF_FETCH (0x01),
    BPF_CMPXCHG (0xf0 | BPF_FETCH: the only form the kernel accepts)."""
    p = asm.Program().fetch_add(8, asm.R9, 8, asm.R1).cmpxchg(4, asm.R2, -4, asm.R3)
    assert insns(p) == [(0xDB, (asm.R1 << 4) | asm.R9, 8, 0x01), (0xC3, (asm.R3 << 4) | asm.R2, -4, 0xF1)]
    with pytest.raises(ValueError, match="4 or 8"):
        asm.Program().fetch_add(2, asm.R1, 0, asm.R2)


def test_byte_swap_register_compares_and_bit_tests():
    p = (asm.Program().be16(asm.R1).jset(asm.R2, 0x6, "x").jeqr(asm.R0, asm.R9, "x").jner(asm.R3, asm.R4, "x")
         .and_(asm.R5, 0xF).lsh(asm.R5, 2).label("x"))
    assert insns(p) == [
        (0xDC, asm.R1, 0, 16),                      # BPF_ALU | BPF_END | BPF_TO_BE, 16 bits
        (0x45, asm.R2, 4, 6),                       # BPF_JMP | BPF_JSET | BPF_K
        (0x1D, (asm.R9 << 4) | asm.R0, 3, 0),       # BPF_JMP | BPF_JEQ | BPF_X (64-bit: pointers too)
        (0x5D, (asm.R4 << 4) | asm.R3, 2, 0),
        (0x57, asm.R5, 0, 0xF),
        (0x67, asm.R5, 0, 2),
    ]
