"""Deprecated alias: the reference Raft moved to ``labkit.systems.raft`` (reference systems
live apart from the runtime that runs them). This alias is removed in the next release."""
import warnings as _warnings

from .systems.raft import *  # noqa: F401,F403
from .systems.raft import LEN_KEY, TERM_KEY, Expired, Raft, RaftKV  # noqa: F401

_warnings.warn("labkit.raft moved to labkit.systems.raft: import it from there "
               "(this alias is removed in the next release)", DeprecationWarning, stacklevel=2)
