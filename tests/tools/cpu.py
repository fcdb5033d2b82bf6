#!/usr/bin/env python3
"""cpu.py snap FILE | cpu.py diff BEFORE AFTER [SECONDS [ITEMS]]

snap: CPU time (user+system, seconds) of every process, with its name
and start time.
diff: the CPU seconds used between two snapshots, by process (one started
in between counts from 0; a kernel worker that renamed itself stays the
same process; one that ended in between is not counted) and then summed
by name, largest
first, with the share of the machine when SECONDS (wall time) is given,
and the milliseconds per item when ITEMS (e.g. messages) is given: a
steadier figure than a rate when the machine's speed drifts.
Used by make bench to show where the time of a run went."""
import os, sys

TICK = os.sysconf("SC_CLK_TCK")


def snap():
    """{pid: (name, seconds, start)} of every process"""
    procs = {}
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
        elif name.startswith("kworker/"):
            # a kernel worker renames itself after the work it does: one name
            name = "kworker"
        procs[pid] = (name, t, fields[19])
    return procs


def load(path):
    out = {}
    for line in open(path):
        pid, name, t, start = line.rstrip("\n").split("\t")
        out[pid] = (name, float(t), start)
    return out


if sys.argv[1] == "snap":
    with open(sys.argv[2], "w") as f:
        for pid, (name, t, start) in sorted(snap().items()):
            f.write("%s\t%s\t%.2f\t%s\n" % (pid, name, t, start))
elif sys.argv[1] == "diff":
    a, b = load(sys.argv[2]), load(sys.argv[3])
    wall = float(sys.argv[4]) if len(sys.argv) > 4 else 0
    items = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    # by process (a process started meanwhile counts from 0), then by name
    by_name = {}
    for pid, (name, t, start) in b.items():
        before = a.get(pid)
        t0 = before[1] if before and before[2] == start else 0.0
        by_name[name] = by_name.get(name, 0.0) + t - t0
    used = sorted(((t, k) for k, t in by_name.items()), reverse=True)
    used = [(t, k) for t, k in used if t >= 0.05]
    for t, k in used:
        share = " (%3.0f%% of one core)" % (100 * t / wall) if wall else ""
        per = " %6.3f ms each" % (1000 * t / items) if items else ""
        print("  %-22s %7.2f s%s%s" % (k, t, share, per))
    total = sum(t for t, _ in used)
    per = " %6.3f ms each" % (1000 * total / items) if items else ""
    print("  %-22s %7.2f s of %.2f s x %d cores%s" % ("total", total, wall, os.cpu_count(), per))
