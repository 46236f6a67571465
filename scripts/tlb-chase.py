#!/usr/bin/env python3
"""Cost of one dependent cold read in a BPF array map, by where the map lives.

Why (docs/per-packet.md, "Chunked route cache: tried, not kept"): array maps larger than 32 KiB
are vmalloc'd with 4 KiB pages; up to 32 KiB they are kmalloc'd, in the
kernel's direct map (2 MiB / 1 GiB pages). This chases a random cycle through
`--lines` 64-byte lines spread over `--mib` MiB, as one plain array (vmalloc)
or as an ARRAY_OF_MAPS of 32 KiB inner arrays (kmalloc), and prints the time
per step (BPF_PROG_TEST_RUN, XDP, `--steps` dependent reads per run).

Hand-assembled BPF through the raw syscall: no libbpf needed. Run as root:
    python3 scripts/tlb-chase.py --mib 8 --lines 65536 [--thrash-mib 256]

Measured with it: docs/per-packet.md, "Chunked route cache".
"""
import argparse
import ctypes
import os
import random
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
NR_BPF = 321
MAP_CREATE, MAP_UPDATE, PROG_LOAD, TEST_RUN = 0, 2, 5, 10
ARRAY, ARRAY_OF_MAPS, XDP = 2, 12, 6
# One element of ARRAY_SIZE_MAX - sizeof(struct bpf_array) (312 on 6.18, BTF):
# the whole allocation is 32 KiB, kmalloc'd, and the element's first 64-byte
# aligned line starts 8 bytes in (312 + 8 = 320).
BPF_ARRAY_HDR = 312
CHUNK_VALUE = 32768 - BPF_ARRAY_HDR
CHUNK_PAD = (-BPF_ARRAY_HDR) % 64
CHUNK_LINES = (CHUNK_VALUE - CHUNK_PAD) // 64


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 256)
    r = libc.syscall(NR_BPF, cmd, buf, 256)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf cmd {cmd}: {os.strerror(e)}")
    return r, buf


def map_create(mtype, key, value, entries, inner_fd=0, name=b""):
    attr = struct.pack("IIIIII", mtype, key, value, entries, 0, inner_fd)
    attr += struct.pack("I", 0) + name.ljust(16, b"\0")[:16]  # numa_node (unused), map_name
    return bpf(MAP_CREATE, attr)[0]


def map_update(fd, key: bytes, value: bytes):
    kb = ctypes.create_string_buffer(key, len(key))
    vb = ctypes.create_string_buffer(value, len(value))
    attr = struct.pack("IIQQQ", fd, 0, ctypes.addressof(kb), ctypes.addressof(vb), 0)
    bpf(MAP_UPDATE, attr)


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def ld_map(dst, fd):
    return insn(0x18, dst, 1, 0, fd) + insn(0, 0, 0, 0, 0)


def lookup(map_fd_or_reg, key_off, from_reg=False):
    """r0 = lookup(map, r10 + key_off); 4 or 5 instructions (ld_imm64 counts 2)."""
    code = insn(0xBF, 1, map_fd_or_reg) if from_reg else ld_map(1, map_fd_or_reg)
    return code + insn(0xBF, 2, 10) + insn(0x07, 2, 0, 0, key_off) + insn(0x85, imm=1)


def program(kind, fd, steps, state, thrash=0, thrash_mask=0):
    """r8: the line index, kept in `state` from run to run (so a run goes on
    where the last one stopped, not over the same warm lines); r7: steps left;
    r6: the state's value. Returns the instructions."""
    out = [insn(0x62, 10, 0, -12, 0)] + [lookup(state, -12)]
    out += [insn(0x55, 0, 0, 2, 0), insn(0xB7, 0, imm=2), insn(0x95)]
    out += [insn(0xBF, 6, 0), insn(0x61, 8, 6, 0), insn(0xB7, 7, imm=steps)]
    body = []
    if thrash:
        # An independent read of a random line of another big array each
        # step: pages the TLB must also hold, as the wire bench's frames are.
        body += [insn(0xBF, 9, 7), insn(0x67, 9, imm=16), insn(0xAF, 9, 8), insn(0x27, 9, imm=0x61C88647)]
        body += [insn(0x57, 9, imm=thrash_mask), insn(0x63, 10, 9, -16)]
        body += [lookup(thrash, -16), insn(0x15, 0, 0, 1, 0), insn(0x71, 9, 0, 0)]
    if kind == "flat":
        body += [insn(0x63, 10, 8, -4)]
        body += [lookup(fd, -4)]
        body += [None]  # if r0 == 0 goto exit
        body += [insn(0x61, 8, 0, 0)]
    else:
        body += [insn(0xBF, 9, 8), insn(0x37, 9, imm=CHUNK_LINES), insn(0x63, 10, 9, -4)]
        body += [lookup(fd, -4)]
        body += [None]
        body += [insn(0x62, 10, 0, -8, 0)]  # *(u32 *)(r10 - 8) = 0
        body += [lookup(0, -8, from_reg=True)]
        body += [None]
        body += [insn(0xBF, 9, 8), insn(0x97, 9, imm=CHUNK_LINES)]
        body += [None]  # if r9 > CHUNK_LINES - 1 goto exit (bounds for the verifier)
        body += [insn(0x67, 9, imm=6), insn(0x07, 9, imm=CHUNK_PAD), insn(0x0F, 0, 9)]
        body += [insn(0x61, 8, 0, 0)]
    body += [insn(0x17, 7, imm=1)]
    # lay out: compute instruction offsets (ld_imm64 = 2 slots)
    slots = lambda b: len(b) // 8
    n_body = sum(slots(b) if b else 1 for b in body) + 1  # + the back jump
    pos, code = 0, b""
    for b in body:
        if b is None:
            here = pos
            # exit is right after the back jump: n_body - here - 1 slots ahead
            if kind == "chunk" and code.endswith(insn(0x97, 9, imm=CHUNK_LINES)):
                code += insn(0x25, 9, 0, n_body - here - 1, CHUNK_LINES - 1)
            else:
                code += insn(0x15, 0, 0, n_body - here - 1, 0)
            pos += 1
        else:
            code += b
            pos += slots(b)
    code += insn(0x55, 7, 0, -(pos + 1), 0)
    code += insn(0x63, 6, 8, 0) + insn(0xB7, 0, imm=2) + insn(0x95)
    return b"".join(out) + code


def prog_load(code):
    lic = ctypes.create_string_buffer(b"GPL")
    ib = ctypes.create_string_buffer(code, len(code))
    log = ctypes.create_string_buffer(1 << 20)
    attr = struct.pack("IIQQIIQ", XDP, len(code) // 8, ctypes.addressof(ib), ctypes.addressof(lic), 1, len(log), ctypes.addressof(log))
    try:
        return bpf(PROG_LOAD, attr)[0]
    except OSError:
        sys.stderr.write(log.value.decode()[-3000:])
        raise


def test_run(fd, repeat):
    data = ctypes.create_string_buffer(b"\0" * 64, 64)
    attr = struct.pack("IIIIQQII", fd, 0, 64, 0, ctypes.addressof(data), 0, repeat, 0)
    _, buf = bpf(TEST_RUN, attr)
    return struct.unpack_from("I", buf.raw, 36)[0]  # duration, ns per run


def vmalloc_areas():
    with open("/proc/vmallocinfo") as f:
        return sum(1 for line in f if "map_alloc" in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--lines", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--thrash-mib", type=int, default=0, help="a power of two; 0: none")
    a = ap.parse_args()
    rng = random.Random(22)
    chunks = a.mib * 1024 * 1024 // 32768
    total = chunks * CHUNK_LINES
    flat_entries = total
    lines = rng.sample(range(total), min(a.lines, total))
    order = lines[:]
    rng.shuffle(order)
    nxt = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    start = order[0]

    before = vmalloc_areas()
    flat = map_create(ARRAY, 4, 64, flat_entries, name=b"chase_flat")
    for line, to in nxt.items():
        map_update(flat, struct.pack("I", line), struct.pack("I", to).ljust(64, b"\0"))
    after_flat = vmalloc_areas()
    inner_tmpl = map_create(ARRAY, 4, CHUNK_VALUE, 1, name=b"chase_tmpl")
    outer = map_create(ARRAY_OF_MAPS, 4, 4, chunks, inner_fd=inner_tmpl, name=b"chase_outer")
    values = [bytearray(CHUNK_VALUE) for _ in range(chunks)]
    for line, to in nxt.items():
        c, s = divmod(line, CHUNK_LINES)
        struct.pack_into("I", values[c], CHUNK_PAD + s * 64, to)
    inners = []
    for c in range(chunks):
        fd = map_create(ARRAY, 4, CHUNK_VALUE, 1, name=b"chase_chunk")
        map_update(fd, struct.pack("I", 0), bytes(values[c]))
        map_update(outer, struct.pack("I", c), struct.pack("I", fd))
        inners.append(fd)
    after_chunks = vmalloc_areas()
    print(f"{a.mib} MiB: {flat_entries} lines flat, {chunks} chunks of {CHUNK_LINES} lines; "
          f"chasing {len(order)} lines, {a.steps} steps a run; load {os.getloadavg()[0]:.1f}")
    print(f"vmalloc'd bpf map areas: +{after_flat - before} for the flat array, "
          f"+{after_chunks - after_flat} for {chunks} chunks (+ the outer map)")
    thrash, mask = 0, 0
    if a.thrash_mib:
        entries = a.thrash_mib * 1024 * 1024 // 64
        thrash, mask = map_create(ARRAY, 4, 64, entries, name=b"chase_thrash"), entries - 1
        print(f"each step also reads a random line of {a.thrash_mib} MiB (vmalloc'd)")
    progs, states = {}, {}
    for kind, fd in (("flat", flat), ("chunk", outer)):
        states[kind] = map_create(ARRAY, 4, 4, 1, name=b"chase_state")
        progs[kind] = prog_load(program(kind, fd, a.steps, states[kind], thrash, mask))
    # The chase starts at line 0 (the state map's initial value): if 0 is not
    # in the cycle, it leads into it.
    if 0 not in nxt:
        map_update(flat, struct.pack("I", 0), struct.pack("I", start).ljust(64, b"\0"))
        values[0][CHUNK_PAD:CHUNK_PAD + 4] = struct.pack("I", start)
        map_update(inners[0], struct.pack("I", 0), bytes(values[0]))
    res = {"flat": [], "chunk": []}
    for _ in range(a.rounds):
        for kind in ("flat", "chunk"):
            res[kind].append(test_run(progs[kind], a.repeat) / a.steps)
    for kind in ("flat", "chunk"):
        r = sorted(res[kind])
        print(f"  {kind:5}: {r[len(r) // 2]:6.1f} ns a step (rounds {r[0]:.1f} .. {r[-1]:.1f})")


if __name__ == "__main__":
    main()
