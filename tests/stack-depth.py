#!/usr/bin/env python3
"""The deepest stack of a Thumb-2 (Cortex-M) image, read from its machine
code: `llvm-objdump -d` of the image on stdin, the root function as the
first argument (e.g. `_start`).

Stable Rust has no stack-size output (`-Z emit-stack-sizes` is nightly),
so this reads what the compiler emitted:

- a function's frame: every instruction in it that lowers `sp` (`push`,
  `vpush`, `str rN, [sp, #-N]!`, `sub sp, #N`), summed. A function with
  two prologues (shrink-wrapped paths) is counted with both: an upper
  bound.
- its calls: `bl`/`blx` to a symbol; a branch (`b`, `b.w`, conditional)
  to another function's start is a tail call, made once the caller's
  frame is gone; `blx rN`/`bx rN` through a register loaded from a
  literal (`ldr rN, [pc, #N]`, which `opt-level = "z"` uses for repeated
  calls) or `movw`/`movt` in the same function is resolved to its
  function. Calls through a register loaded otherwise (function pointers:
  vtables, wakers) cannot be followed; they are counted and named.
- the deepest path from the root: each call at the caller's full frame;
  a cycle (recursion) is reported, and its functions counted once.

Prints `key=value` lines: `deepest` (bytes), `unresolved` (indirect
calls not followed on the reachable graph, then `indirect=<count>
<function>` for each function making them), `recursive` (functions
closing a cycle, then `cycle=<function>` for each), then
`frame=<bytes> <function>` for each function of the deepest path, root
first.

Checked against the compiler's own figures once (nightly
`-Z emit-stack-sizes` on the keyway-embassy budget image, read with
`llvm-readobj --stack-sizes`): 666 of its 669 functions have the same
frame here, and 3 (k256 point arithmetic) are over by 8 to 56 bytes.
"""

import re
import sys

FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN = re.compile(r"^\s+([0-9a-f]+):\s+(?:[0-9a-f]{2}\s)*\s*(\S+)\s*(.*)$")
TARGET = re.compile(r"0x([0-9a-f]+) <([^>+]+)(\+0x[0-9a-f]+)?>")
REGLIST = re.compile(r"\{([^}]*)\}")
IMM = re.compile(r"#(-?\d+)")


def reg_count(operands):
    """Registers in a register list; `d8-d15` counts 8, `r4, r5` counts 2."""
    found = REGLIST.search(operands)
    if not found:
        return 0, ""
    n = 0
    kind = ""
    for part in found.group(1).split(","):
        part = part.strip()
        kind = part[:1]
        if "-" in part:
            lo, hi = part.split("-")
            n += int(hi[1:]) - int(lo[1:]) + 1
        else:
            n += 1
    return n, kind


def main():
    root = sys.argv[1]
    lines = sys.stdin.read().splitlines()
    words = {}  # address -> 32-bit literal
    funcs = {}  # name -> dict(start, frame, calls, tails, unresolved)
    starts = {}  # address -> name
    order = []
    current = None
    for line in lines:
        m = FUNC.match(line)
        if m:
            name = m.group(2)
            if name.startswith("$"):
                # A mapping symbol ($t code, $d data) inside a function.
                continue
            current = {
                "start": int(m.group(1), 16),
                "frame": 0,
                "insns": [],
            }
            funcs[name] = current
            starts[current["start"]] = name
            order.append(name)
            continue
        m = INSN.match(line)
        if not m:
            continue
        addr, op, operands = int(m.group(1), 16), m.group(2), m.group(3)
        if op == ".word":
            words[addr] = int(operands.split()[0], 16)
            continue
        if current is not None:
            current["insns"].append((addr, op, operands))

    # Outlined code (the machine outliner, at opt-level "z") may call
    # through a register its caller set: read those first, so that each
    # call site can resolve them.
    for name in sorted(funcs, key=lambda n: not n.startswith("OUTLINED_FUNCTION_")):
        f = funcs[name]
        frame = 0
        written = set()
        needs = set()
        calls = []
        tails = []
        unresolved = 0
        regs = {}  # register -> address it holds, when loaded from a literal
        for addr, op, operands in f["insns"]:
            base = op.split(".")[0]
            if base in ("push", "stmdb") and (base == "push" or operands.startswith("sp!")):
                n, _ = reg_count(operands)
                frame += 4 * n
            elif base == "vpush":
                n, kind = reg_count(operands)
                frame += (8 if kind == "d" else 4) * n
            elif base in ("str", "strd") and "[sp, #-" in operands and operands.endswith("]!"):
                frame += -int(IMM.search(operands.split("[sp, ")[1]).group(1))
            elif base in ("sub", "subw") and re.match(r"sp, (sp, )?#", operands):
                frame += int(IMM.search(operands).group(1))
            elif base in ("sub", "subw") and re.match(r"sp, (sp, )?r\d+", operands):
                reg = re.match(r"sp, (?:sp, )?(r\d+)", operands).group(1)
                if reg in regs:
                    frame += regs[reg]
                else:
                    print(f"warning: {name} lowers sp by an unknown register", file=sys.stderr)
            dest = operands.split(",")[0].strip()
            if base not in KEEPS:
                written.add(dest)
            if base == "ldr" and "[pc, #" in operands:
                t = re.search(r"@ 0x([0-9a-f]+)", operands)
                if t and int(t.group(1), 16) in words:
                    regs[dest] = words[int(t.group(1), 16)]
                    continue
            if base == "mov" and re.match(r"(r\d+|ip|lr), (r\d+|ip|lr)$", operands):
                src = operands.split(",")[1].strip()
                if src in regs:
                    regs[dest] = regs[src]
                else:
                    regs.pop(dest, None)
                continue
            spill = re.match(r"(r\d+|ip|lr), \[sp(?:, #(\d+))?\]$", operands)
            if base == "str" and spill:
                slot = "sp+" + (spill.group(2) or "0")
                if spill.group(1) in regs:
                    regs[slot] = regs[spill.group(1)]
                else:
                    regs.pop(slot, None)
                continue
            if base == "ldr" and spill:
                slot = "sp+" + (spill.group(2) or "0")
                if slot in regs:
                    regs[dest] = regs[slot]
                else:
                    regs.pop(dest, None)
                continue
            if base == "movw":
                regs[dest] = int(IMM.search(operands).group(1)) & 0xFFFF
                continue
            if base == "movt" and dest in regs:
                regs[dest] = (regs[dest] & 0xFFFF) | (int(IMM.search(operands).group(1)) << 16)
                continue
            if base in ("bl", "blx") and not re.match(r"r\d+$|lr$|ip$", operands):
                t = TARGET.search(operands)
                if t:
                    calls.append(int(t.group(1), 16))
                    for reg in funcs.get(starts.get(int(t.group(1), 16)), {}).get("needs", ()):
                        if reg in regs and regs[reg] & ~1 in starts:
                            calls.append(regs[reg] & ~1)
                        else:
                            unresolved += 1
            elif base in ("blx", "bx") and re.match(r"(r\d+|ip)$", operands):
                reg = operands.strip()
                if reg in regs and regs[reg] & ~1 in starts:
                    target = regs[reg] & ~1
                    (calls if base == "blx" else tails).append(target)
                elif name.startswith("OUTLINED_FUNCTION_") and reg not in written:
                    needs.add(reg)
                else:
                    unresolved += 1
            elif base == "b" or (base.startswith("b") and base[1:] in COND):
                t = TARGET.search(operands)
                if t and not t.group(3) and int(t.group(1), 16) in starts and int(t.group(1), 16) != f["start"]:
                    tails.append(int(t.group(1), 16))
            if base in ("bl", "blx"):
                # A call may change the caller-saved registers.
                for reg in ("r0", "r1", "r2", "r3", "r12", "ip"):
                    regs.pop(reg, None)
            # Any other write to a register forgets what it held.
            if dest in regs and base not in KEEPS:
                regs.pop(dest, None)
        f["frame"] = frame
        f["calls"] = sorted(set(calls))
        f["tails"] = sorted(set(tails))
        f["unresolved"] = unresolved
        f["needs"] = needs

    # Deepest path from the root (memoised DFS; a cycle counts once).
    sys.setrecursionlimit(100000)
    depth = {}
    best = {}
    on_path = set()
    recursive = set()

    def visit(name):
        if name in depth:
            return depth[name]
        if name in on_path:
            recursive.add(name)
            return 0
        on_path.add(name)
        f = funcs[name]
        below, via = 0, None
        for target in f["calls"]:
            callee = starts.get(target)
            if callee is None:
                continue
            d = visit(callee)
            if d > below:
                below, via = d, callee
        total, how = f["frame"] + below, via
        for target in f["tails"]:
            callee = starts.get(target)
            if callee is None:
                continue
            d = visit(callee)
            if d > total:
                total, how = d, ("tail", callee)
        on_path.discard(name)
        depth[name] = total
        best[name] = how
        return total

    if root not in funcs:
        sys.exit(f"{root}: no such function in the image")
    deepest = visit(root)
    reachable = set(depth)
    unresolved = sum(funcs[n]["unresolved"] for n in reachable)
    print(f"deepest={deepest}")
    print(f"unresolved={unresolved}")
    print(f"recursive={len(recursive)}")
    for n in sorted(recursive):
        print(f"cycle={n}")
    for n in sorted(reachable, key=lambda n: -funcs[n]["unresolved"]):
        if funcs[n]["unresolved"]:
            print(f"indirect={funcs[n]['unresolved']} {n}")
    name = root
    seen = set()
    while name is not None and name not in seen:
        seen.add(name)
        how = best.get(name)
        if isinstance(how, tuple):
            name = how[1]
            continue
        print(f"frame={funcs[name]['frame']} {name}")
        name = how


# Instructions whose first operand is read, not written.
KEEPS = {"str", "strd", "strb", "strh", "cmp", "cmn", "tst", "teq", "push", "bl", "blx", "bx", "cbz", "cbnz"}
COND = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le"}

if __name__ == "__main__":
    main()
