#!/usr/bin/env python3
"""The disk's floor for a catch-up: P processes (one per peer), each putting F files of S bytes in
place the way any crash-safe sync daemon must (write a temp file, fsync it, rename it into place,
fsync the folder), all at once; prints the wall time and files per second.

    scripts/disk-floor.py 100 227 2400 target/disk-floor   # scale-100's catch-up (docs/BENCHMARKS.md)

DIR is created and left for the caller to remove (it must be on the disk being measured)."""
import os, sys, time, multiprocessing as mp
if len(sys.argv) != 5:
    sys.exit("usage: disk-floor.py PROCESSES FILES BYTES DIR")
P, F, S = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
base = sys.argv[4]
data = os.urandom(S)
def peer(i, start):
    d = os.path.join(base, f'p{i}'); os.makedirs(d, exist_ok=True)
    start.wait()
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    for k in range(F):
        tmp = os.path.join(d, f'.tmp{k}'); fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data); os.fsync(fd); os.close(fd)
        os.rename(tmp, os.path.join(d, f'file-{k}.dat')); os.fsync(dfd)
    os.close(dfd)
if __name__ == '__main__':
    start = mp.Barrier(P + 1)
    ps = [mp.Process(target=peer, args=(i, start)) for i in range(P)]
    [p.start() for p in ps]
    start.wait(); t = time.monotonic()
    [p.join() for p in ps]
    dt = time.monotonic() - t
    print(f'{P} processes x {F} files of {S} B: {dt:.2f} s, {P*F/dt:.0f} files/s')
