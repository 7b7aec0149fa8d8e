#!/usr/bin/env python3
"""How much an fdatasync costs on this machine's file system, by how the file grows.

Writes N records of B bytes to a file in DIR, each followed by fdatasync, three ways:
  append  the file grows with every write (its new size must reach the device each time)
  zero    the file was filled with zeros first; writes overwrite existing blocks
  falloc  the space was reserved with posix_fallocate (unwritten extents)
and prints syncs per second, wall time per sync and this process's CPU per sync
(kernel threads, such as a journal's, are not counted).

usage: bench/fsync-modes.py [DIR] [N] [B]
"""
import os
import resource
import sys
import tempfile


def run(mode, directory, count, size):
    fd, path = tempfile.mkstemp(dir=directory, prefix="fsync-modes-")
    try:
        if mode == "zero":
            os.write(fd, bytes(count * size + 4096))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        elif mode == "falloc":
            os.posix_fallocate(fd, 0, count * size + 4096)
            os.fsync(fd)
        record = b"x" * size
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = os.times().elapsed
        for _ in range(count):
            os.write(fd, record)
            os.fdatasync(fd)
        wall = os.times().elapsed - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(f"{mode:7s} {count / wall:8.0f} syncs/s  wall {wall / count * 1e6:7.1f} us/sync  cpu {cpu / count * 1e6:6.1f} us/sync")
    finally:
        os.close(fd)
        os.remove(path)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    for _ in range(2):
        for mode in ("append", "zero", "falloc"):
            run(mode, directory, count, size)


if __name__ == "__main__":
    main()
