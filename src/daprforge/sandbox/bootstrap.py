"""The first code that runs inside the sandbox, before the learner's (``python -c``).

It makes itself the OOM killer's first choice, then waits: a sandbox is started ahead of its
run (supervisor.py keeps one ready per slot), so interpreter start-up is not part of a
run's latency. When the run begins, the control socket brings the run's orders (rlimits,
the expression to ``call``) with the program and stdin as sealed memfds (``SCM_RIGHTS``).
It lowers the rlimits (hard and soft: the learner cannot raise them again), closes the
control socket, tells the supervisor it started, and runs the program as ``__main__``. (It
is born in the slot's cgroups: see spawner.py.) Every limit that matters is set before a
single line of learner code runs and is enforced by the kernel, so nothing the program does
to this interpreter (signal handlers, monkeypatching, catching BaseException) loosens it.

The result channel carries frames ``tag (1 byte) | length (4 bytes, big-endian) | payload``:
``S`` started, ``X`` the name of an uncaught exception, ``V`` the JSON value of a ``call``.
It only ever carries observations; verdicts and comparisons are made by the supervisor.

Kept dependency-free and small: it runs once per execution, and its start-up is CPU every
run pays for (in throughput, if no longer in latency).
"""

from __future__ import annotations

SOURCE = r"""
def _boot():
    # posix, not os: os costs milliseconds to import, posix is built in.
    import posix as os, sys, resource, builtins, __main__, _socket
    control, chan_fd = int(sys.argv[1]), int(sys.argv[2])
    try:
        # The OOM killer's first choice in the slot: never the slot's spawner.
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")
    except OSError:
        pass
    sock = _socket.socket(fileno=control)
    try:
        sock.send(b"R")  # ready: up, and waiting for the run
    except OSError:
        os._exit(0)  # the supervisor gave this sandbox up before its run
    orders, ancillary, _, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(8))
    sock.close()
    if not orders:
        os._exit(0)  # the supervisor gave this sandbox up before its run
    data = b"".join(item[2] for item in ancillary)
    code_fd, stdin_fd = [
        int.from_bytes(data[at : at + 4], sys.byteorder) for at in range(0, len(data) - 3, 4)
    ]
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    numbers, call = orders.decode("utf-8", "surrogatepass").split("\0", 1)
    cpu, memory, processes, file_size, open_files, value_cap = map(int, numbers.split(","))
    limit = resource.setrlimit
    limit(resource.RLIMIT_CORE, (0, 0))
    limit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    limit(resource.RLIMIT_AS, (memory, memory))
    limit(resource.RLIMIT_NPROC, (processes, processes))
    limit(resource.RLIMIT_FSIZE, (file_size, file_size))
    limit(resource.RLIMIT_NOFILE, (open_files, open_files))
    chunks = []
    while True:
        chunk = os.read(code_fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(code_fd)
    write = os.write

    def frame(tag, payload=b""):
        try:
            write(chan_fd, tag + len(payload).to_bytes(4, "big") + payload)
        except OSError:
            pass

    if call:
        import json
        dumps = json.dumps
    namespace = __main__.__dict__
    namespace.clear()
    namespace.update(__name__="__main__", __builtins__=builtins, __file__="/tmp/main.py")
    sys.argv = ["/tmp/main.py"]
    source = b"".join(chunks)
    del chunks
    frame(b"S")
    try:
        exec(compile(source, "/tmp/main.py", "exec"), namespace)
        if call:
            value = eval(call, namespace)
            try:
                encoded = dumps(value, allow_nan=False).encode()
            except (TypeError, ValueError, RecursionError) as error:
                frame(b"X", b"NotJSONSerializable")
                raise SystemExit("the value is not JSON: " + str(error)[:200])
            if len(encoded) > value_cap:
                frame(b"X", b"ValueTooLarge")
                raise SystemExit("the value is larger than %d bytes of JSON" % value_cap)
            frame(b"V", encoded)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    except SystemExit:
        raise
    except BaseException as error:
        frame(b"X", type(error).__name__.encode("utf-8", "replace")[:200])
        import linecache, traceback
        lines = source.decode("utf-8", "replace").splitlines(True)
        linecache.cache["/tmp/main.py"] = (len(source), None, lines, "/tmp/main.py")
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        raise SystemExit(1)
_boot()
"""
