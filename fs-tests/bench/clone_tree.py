"""Tree and sparse-image reflink copies on daxlink, for fs-tests/bench/run.

`cp -a --reflink=auto` (coreutils 9.1) reaches copy_file_range, the one reflink path a
FUSE server gets, only for files without holes: a sparse file's data is copied with
read and write. `daxlink clone -r` clones every file's extents, as root in batches
inside the daemon (DAXLINK_IOC_CLONE_DIR), with --per-file one copy_file_range per
file as any other caller. This module times the three on the same sources, in
rotation, round after round, on one daxlink mount (the run's untar tree and a sparse
image with a tenth of its bytes written), and checks what each made.
"""
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

MiB = 1 << 20
PAGE = 4096

METHODS = [
    ("cp -a --reflink=auto", lambda s, d: ["cp", "-a", "--reflink=auto", s, d]),
    ("daxlink clone -r", lambda s, d: ["daxlink", "clone", "-r", s, d]),
    ("daxlink clone -r --per-file", lambda s, d: ["daxlink", "clone", "-r", "--per-file", s, d]),
]


def run(cmd, timeout=600):
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    return time.perf_counter() - t, p


def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def make_image(path, mib):
    """A sparse image of `mib` MiB: 1 MiB of data at the start of every 10 MiB."""
    with open(path, "wb") as f:
        f.truncate(mib * MiB)
        for off in range(0, mib * MiB, 10 * MiB):
            f.seek(off)
            f.write(os.urandom(MiB))
    return sum(1 for _ in range(0, mib * MiB, 10 * MiB)) * MiB


def same_tree(a, b):
    """diff -r --no-dereference: the contents of both trees are identical."""
    p = subprocess.run(["diff", "-r", "--no-dereference", "-q", a, b],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode == 0, p.stdout.strip()[:300]


def measure(d, tarball, tarmeta, image_mib, rounds):
    """On the mounted daxlink `d` (fs-tests/bench/run's Daxlink): the rows
    (label, [seconds], unit, note) and the problems found."""
    rows, problems = [], []
    tree, image = d.mnt / "tree", d.mnt / "image"
    tree.mkdir()
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(tree)], check=True)
    data = make_image(image, image_mib)
    sources = [
        (f"untar tree ({tarmeta['files']:,} files, {tarmeta['bytes'] / MiB:.0f} MiB)", tree),
        (f"{image_mib // 1024} GiB sparse image, {data / MiB:.0f} MiB of data"
         if image_mib >= 1024 else f"{image_mib} MiB sparse image, {data / MiB:.0f} MiB of data",
         image),
    ]
    times = {(s, m): [] for s, _ in sources for m, _ in METHODS}
    growth = {(s, m): [] for s, _ in sources for m, _ in METHODS}
    for rnd in range(rounds):
        # The methods take turns first from round to round.
        order = METHODS[rnd % len(METHODS):] + METHODS[:rnd % len(METHODS)]
        for sname, src in sources:
            for mname, cmd in order:
                dst = d.mnt / "copy"
                drop_caches()
                before = d.stat()["pages_used"]
                t, p = run(cmd(str(src), str(dst)))
                if p.returncode != 0:
                    problems.append(f"{mname} of the {sname}: exit {p.returncode}: "
                                    f"{p.stderr.strip()[-300:]}")
                else:
                    times[(sname, mname)].append(t)
                    growth[(sname, mname)].append(d.stat()["pages_used"] - before)
                    if rnd == 0:
                        ok, why = same_tree(str(src), str(dst))
                        if not ok:
                            problems.append(f"{mname} of the {sname}: the copy differs: {why}")
                if dst.is_dir():
                    shutil.rmtree(dst)
                elif dst.exists():
                    dst.unlink()
    for sname, _ in sources:
        for mname, _ in METHODS:
            g = growth[(sname, mname)]
            note = f"pages_used +{max(g):,}" if g else "failed"
            rows.append((f"`{mname}` of the {sname}", times[(sname, mname)], "s", note))
            if mname.startswith("daxlink") and g and max(g) > 0:
                problems.append(f"{mname} of the {sname} used {max(g)} new pages")
    for path in (tree, image):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return rows, problems


def report(rows, rounds, cell, out):
    """The table, with each daxlink row's speed-up over cp -a of the same source."""
    out("### reflink copies of a tree and of a sparse image (daxlink alone)")
    out()
    out(f"Cells: median (min–max) over {rounds} round(s), methods in rotation, page "
        f"cache dropped before each copy; pages_used: the most one copy added.")
    out()
    out("| copy | time | unit | vs `cp -a --reflink=auto` | pages |")
    out("|---|---|---|---|---|")
    base = {}
    figures = {}
    for label, vals, unit, note in rows:
        src = label.split(" of the ", 1)[1]
        med = statistics.median(vals) if vals else None
        if label.startswith("`cp -a"):
            base[src] = med
        vs = f"{base[src] / med:.1f}×" if med and base.get(src) else "–"
        out(f"| {label} | {cell(vals)} | {unit} | {vs} | {note} |")
        figures[label] = med
    out()
    return figures
