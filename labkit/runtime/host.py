"""What a cluster needs from the machine it runs on: short directories for its sockets, swept
when their owner is gone, and room for its file descriptors.

Sockets (ZeroMQ's ipc endpoints, multiprocess's forkserver) are files whose paths AF_UNIX
limits to about 100 bytes, so they live in a short temporary directory: ``$TMPDIR`` when its
path is short, else ``/tmp`` (macOS's ``$TMPDIR`` is long). Every directory labkit makes
holds its owner's pid in ``owner.pid``; a directory whose owner is gone -- a kernel SIGKILLed
with its process group leaves them -- is removed by the next cluster that starts. That
includes multiprocess's own temporary directory, which labkit makes for it (``labkit-mp-*``),
and ``pymp-*`` directories that multiprocess made itself, once no process has their
forkserver socket bound.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from typing import Any

from ..errors import LabkitError

#: Set (to "1") in the environment of the processes that run nodes only -- the forkserver,
#: and so every node it forks, or a spawned node: ``import labkit`` there skips the modules
#: only a notebook needs (numpy, for reading journals), which every cold start would pay for.
NODE_PROCESS_ENV = "LABKIT_NODE_PROCESS"

OWNER_FILE = "owner.pid"


#: The longest socket path labkit makes (AF_UNIX allows 108 bytes on Linux, 104 on macOS).
MAX_SOCKET_PATH = 100
#: Where sockets go when the temporary directory's path is too long for them.
SHORT_TMP = "/tmp"
#: The longest temporary directory path used as it is: a cluster's sockets add up to 53
#: characters (``/labkit-xxxxxxxx/`` and a 32-character node id with ``.in``).
MAX_TMP_BASE = 40


def short_base() -> str:
    """The directory for labkit's and the forkserver's sockets: the temporary directory, or
    ``/tmp`` when its path is too long (macOS's ``$TMPDIR`` is), or a clear error."""
    base = tempfile.gettempdir()
    if len(base) <= MAX_TMP_BASE:
        return base
    if os.path.isdir(SHORT_TMP) and os.access(SHORT_TMP, os.W_OK | os.X_OK):
        return SHORT_TMP
    raise LabkitError(
        f"the temporary directory {base!r} is {len(base)} characters long: too long for the "
        f"sockets a cluster uses (their paths must stay under {MAX_SOCKET_PATH} bytes), and "
        f"{SHORT_TMP} is not there to use instead. Set TMPDIR to a short writable directory "
        f"(for example `export TMPDIR=/tmp`, or os.environ['TMPDIR'] = '/tmp' before importing "
        f"labkit) and start again.")


def own_mp_tempdir(lock: Any) -> None:
    """Give multiprocess a temporary directory of labkit's (before it makes its own ``pymp-*``):
    the forkserver's socket lives there. Ours is short (a long ``TMPDIR`` would make that
    socket's path too long for AF_UNIX) and carries an owner file, so when the notebook is
    SIGKILLed and nobody removes it, the next cluster sweeps it like its own directories."""
    from multiprocess import process, util
    config = process.current_process()._config
    with lock:                       # clusters started from two threads make one directory
        current = config.get("tempdir")
        if current is not None and len(os.path.join(current, "listener-xxxxxxxx")) <= MAX_SOCKET_PATH:
            return                   # multiprocess was used before labkit; its forkserver may run
        d = tempfile.mkdtemp(prefix="labkit-mp-", dir=short_base())
        with open(os.path.join(d, OWNER_FILE), "w") as f:
            f.write(str(os.getpid()))
        util.Finalize(None, util._remove_temp_dir, args=(shutil.rmtree, d), exitpriority=-100)
        config["tempdir"] = d


#: A ``pymp-*`` directory younger than this is never swept (its forkserver may be starting).
PYMP_MIN_AGE_S = 60.0


def dead_forkserver_dir(d: str) -> bool:
    """True for a ``pymp-*`` directory left by a forkserver that is gone -- multiprocess's
    (or multiprocessing's) own, made before labkit owned the directory or by other programs.
    It has no owner file, so it counts as abandoned only when it is ours, holds nothing but
    ``listener-*`` sockets at least ``PYMP_MIN_AGE_S`` old, and no process has any of them
    bound (Linux's /proc/net/unix lists every bound socket; elsewhere nothing is swept)."""
    try:
        with open("/proc/net/unix") as f:
            bound = {line.split()[-1] for line in f.read().splitlines()[1:] if len(line.split()) >= 8}
        if os.stat(d).st_uid != os.getuid():
            return False
        names = os.listdir(d)
        now = time.time()
        for n in names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if (not n.startswith("listener-") or not stat.S_ISSOCK(st.st_mode) or p in bound
                    or now - st.st_mtime < PYMP_MIN_AGE_S):
                return False
        return bool(names)
    except (OSError, ValueError):
        return False


def ensure_fd_limit(n: int) -> None:
    """Make room for an ``n``-node cluster's file descriptors in this process (and in the node
    processes, which inherit the limit): raise the soft RLIMIT_NOFILE toward the hard limit,
    or refuse with what to do. (macOS's default soft limit is 256; 64 nodes need more.)"""
    from .child import fds_needed, raise_fd_limit
    try:
        in_use = len(os.listdir("/dev/fd"))
    except OSError:
        in_use = 64
    need = in_use + fds_needed(n, parent=True)
    enough, soft, hard = raise_fd_limit(need)
    if not enough:
        hard_s = "unlimited" if hard < 0 else str(hard)
        raise LabkitError(
            f"a cluster of {n} nodes needs about {need} open files in this process, but its limit "
            f"(RLIMIT_NOFILE) is {soft} and cannot be raised beyond {hard_s}. Use fewer nodes (or close "
            f"other clusters), or raise the limit before starting Python or Jupyter: `ulimit -n {need}` "
            f"in the shell (and the hard limit with `ulimit -Hn` if needed).")
