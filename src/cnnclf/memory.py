"""Memory: this process's peak, handing freed memory back, and how much the machine has."""

import os


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program, in MiB. Linux's VmHWM,
    not getrusage: that keeps the high-water mark of the process before exec, which for a child
    of a large process (the benchmark holds TensorFlow) is the parent's size."""
    try:
        with open("/proc/self/status") as f:
            return round(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024, 1)
    except (OSError, StopIteration):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def release_memory() -> None:
    """Hand memory freed since the last call back to the OS (glibc keeps it resident)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def machine_memory_mb() -> int:
    """The memory this process may use, in MiB: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
            if text.isdigit():
                total = min(total, int(text))
        except OSError:
            continue
    return total // 2**20
