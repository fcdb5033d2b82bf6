#!/usr/bin/env python3
"""cpu.py snap FILE | cpu.py diff BEFORE AFTER [SECONDS [ITEMS]]

snap: CPU time (user+system, seconds) of every process, summed by name.
diff: the CPU seconds each name used between two snapshots, largest
first, with the share of the machine when SECONDS (wall time) is given,
and the milliseconds per item when ITEMS (e.g. messages) is given: a
steadier figure than a rate when the machine's speed drifts.
Used by make bench to show where the time of a run went."""
import os, sys

TICK = os.sysconf("SC_CLK_TCK")


def snap():
    total = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                s = f.read()
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        t = (int(fields[11]) + int(fields[12])) / TICK
        # casemail stages and dovecot's imap processes by their role
        prog = os.path.basename(argv[0].decode(errors="replace")) if argv and argv[0] else name
        if prog.startswith("casemail-"):
            name = prog
        elif name == "postgres":
            name = "postgres"
        total[name] = total.get(name, 0.0) + t
    return total


def load(path):
    out = {}
    for line in open(path):
        k, v = line.rsplit(None, 1)
        out[k] = float(v)
    return out


if sys.argv[1] == "snap":
    with open(sys.argv[2], "w") as f:
        for k, v in sorted(snap().items()):
            f.write("%s %.2f\n" % (k, v))
elif sys.argv[1] == "diff":
    a, b = load(sys.argv[2]), load(sys.argv[3])
    wall = float(sys.argv[4]) if len(sys.argv) > 4 else 0
    items = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    used = sorted(((b[k] - a.get(k, 0.0), k) for k in b), reverse=True)
    used = [(t, k) for t, k in used if t >= 0.05]
    for t, k in used:
        share = " (%3.0f%% of one core)" % (100 * t / wall) if wall else ""
        per = " %6.3f ms each" % (1000 * t / items) if items else ""
        print("  %-22s %7.2f s%s%s" % (k, t, share, per))
    total = sum(t for t, _ in used)
    per = " %6.3f ms each" % (1000 * total / items) if items else ""
    print("  %-22s %7.2f s of %.2f s x %d cores%s" % ("total", total, wall, os.cpu_count(), per))
