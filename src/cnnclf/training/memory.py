"""Memory while training: this process's peak, and handing freed memory back."""


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
