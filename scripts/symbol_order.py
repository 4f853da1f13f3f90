#!/usr/bin/env python3
"""Names the functions the agent ran, for lld's --symbol-ordering-file.

symbol_order.py MAP [--callgrind OUT] [--faults PERF_SCRIPT --elf BIN]
                [--keep FILE]

MAP: the link map of the binary that ran (BOSUN_LINK_MAP, crates/bosun/build.rs).
--callgrind: a callgrind profile of a stripped run: every function entered,
  by address. --faults: `perf script` of exceptions:page_fault_user on a
  native run (with --show-mmap-events): the first function touched in each
  64 KiB the kernel mapped; --elf: the binary that ran (for its load address).
--keep: names already in the order (kept first, in their order).
Prints the order, one linker symbol per line.
"""
import argparse
import bisect
import re
import sys

LINE = re.compile(r'\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s(.*)$')
# A function in a section of its own (Rust's): its section names it,
# mangled. lld's map prints the symbol lines demangled.
OWN = ('.text.unlikely.', '.text.hot.', '.text.startup.', '.text.')
# glibc picks a string function's variant by the CPU (ifunc): valgrind's CPU
# is not the real one, so every variant of a family that ran goes in.
VARIANT = re.compile(r'^(__\w+?)_(sse2|ssse3|sse4_1|sse4_2|avx|avx2|evex|evex512|avx512)')


def read_map(path):
    """The .text input sections: (start, size, section name, [(addr, symbol)])."""
    secs, out = [], None
    with open(path) as f:
        for line in f:
            m = LINE.match(line.rstrip('\n'))
            if not m:
                continue
            addr, size, rest = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            indent = len(rest) - len(rest.lstrip(' '))
            rest = rest.strip()
            if indent == 0:
                out = rest
            elif out != '.text':
                continue
            elif indent <= 8 and ':(' in rest:
                secs.append((addr, size, rest[rest.rindex(':(') + 2:-1], []))
            elif secs:
                secs[-1][3].append((addr, rest))
    return secs


def namer(secs):
    starts = [s[0] for s in secs]

    def name(addr):
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or addr >= secs[i][0] + secs[i][1]:
            return None
        _, _, sec, syms = secs[i]
        for p in OWN:
            if sec.startswith(p) and sec[len(p):].startswith(('_ZN', '_R')):
                return sec[len(p):]
        below = [s for a, s in syms if a <= addr]
        return below[-1] if below else None
    return name


def load_bias(script, elf):
    """Where the run's kernel put the binary: its text mapping's start
    less the text segment's address (a static PIE loads anywhere)."""
    import subprocess
    seg = subprocess.run(['readelf', '-lW', elf], capture_output=True, text=True, check=True)
    vaddr = next(int(f[2], 16) - int(f[1], 16) for f in map(str.split, seg.stdout.splitlines())
                 if f[:1] == ['LOAD'] and f[-2:-1] == ['E'])
    for line in open(script):
        m = re.search(r'\[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0x([0-9a-f]+) .*\]: r-xp ' + re.escape(elf), line)
        if m:
            return int(m.group(1), 16) - int(m.group(2), 16) - vaddr
    sys.exit(f'no text mapping of {elf} in {script}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('map')
    ap.add_argument('--callgrind')
    ap.add_argument('--faults')
    ap.add_argument('--elf')
    ap.add_argument('--keep')
    a = ap.parse_args()
    secs = read_map(a.map)
    name = namer(secs)
    order, seen = [], set()

    def add(n):
        if n and n not in seen:
            seen.add(n)
            order.append(n)
    if a.keep:
        for line in open(a.keep):
            add(line.strip())
    addrs = []
    if a.callgrind:
        for line in open(a.callgrind):
            m = re.match(r'c?fn=\(\d+\) 0x([0-9a-f]+)', line)
            if m:
                addrs.append(int(m.group(1), 16))
    if a.faults:
        bias = load_bias(a.faults, a.elf)
        for line in open(a.faults):
            # error_code 0x14: a user-mode instruction fetch.
            m = re.search(r'address=0x([0-9a-f]+) ip=0x[0-9a-f]+ error_code=0x14', line)
            if m:
                addrs.append(int(m.group(1), 16) - bias)
    before = len(order)
    unnamed = 0
    for addr in addrs:
        n = name(addr)
        unnamed += n is None
        add(n)
    families = {m.group(1) for m in map(VARIANT.match, order) if m}
    for s in secs:
        for _, n in s[3]:
            m = VARIANT.match(n)
            if m and m.group(1) in families:
                add(n)
    print(f'{len(addrs)} addresses, {len(order) - before} new symbols, '
          f'{unnamed} unnamed', file=sys.stderr)
    print('\n'.join(order))


if __name__ == '__main__':
    main()
