"""Checkers: pure functions over histories and the journal that return a ``Verdict``.

* ``check_linearizable(history, model)`` -- Wing & Gong search with Lowe's cache, per key;
  models ``register``, ``cas-register``, ``kv``, ``counter``, ``set``, ``fifo-queue``, ``mutex``.
* ``check_causal(history)`` -- causal consistency of a read/write history with unique write
  values: no read sees an effect without its cause (read-your-writes, monotonic reads,
  writes-follow-reads), each violation explained by its shortest causal chain.
* Over histories: ``set_full`` (broadcast / sets), ``counter_bounds``, ``latency``.
* Over the journal: ``always`` / ``eventually`` invariants, ``convergence``,
  ``availability`` (overall and during ``fault_windows``), ``messages_per_op``.
* Raft (over ``ctx.note`` observations, schema in ``labkit.checkers.raft``): ``check_raft``
  (``election_safety``, ``log_matching``, ``state_machine_safety``, ``leader_completeness``,
  ``commit_monotonic``, ``applied_exactly_once``), liveness ``leader_within`` / ``progress``, cost ``message_budget``.
* Transactions (Elle, Kingsbury & Alvaro 2020): ``check_list_append``, ``check_rw_register``
  (``check_txn`` picks one) -- G0, G1a, G1b, G1c, G-single, G-nonadjacent, G2-item (and -realtime),
  internal, lost-update, ... against a consistency model; see ``labkit.checkers.elle``.
* Kafka-style logs (Maelstrom's kafka workload): ``check_kafka`` -- lost writes, poll skips,
  nonmonotonic polls, duplicates, inconsistent offsets; see ``labkit.checkers.kafka``.
* ``synthetic_history`` makes linearizable histories of a correct object, for tests and demos.

A verdict is ``valid`` True, False or None (unknown -- a checker that runs out of time never
passes); ``bool()`` of an unknown verdict raises ``UnknownVerdict``.
"""
from __future__ import annotations

from .causal import GUARANTEES, CausalViolation, check_causal
from .elle import check_list_append, check_rw_register, check_txn
from .history_checks import counter_bounds, latency, quantiles, set_full
from .kafka import check_kafka
from .journal_checks import (ClusterView, FaultWindow, always, availability, convergence, eventually,
                             fault_windows, messages_per_op)
from .linearizable import Violation, check_linearizable
from .models import (CASRegister, Counter, FIFOQueue, KV, MODELS, NIL, Model, ModelBase, Mutex, Register, SetModel,
                     model)
from .raft import (RaftViolation, applied_exactly_once, check_raft, commit_monotonic, election_safety,
                   leader_completeness, leader_within, log_matching, message_budget, progress, state_machine_safety)
from .synthetic import DEFAULT_MIXES, synthetic_history
from .verdict import UnknownVerdict, Verdict

__all__ = [
    "Verdict", "UnknownVerdict",
    "check_linearizable", "Violation",
    "check_causal", "CausalViolation", "GUARANTEES",
    "check_list_append", "check_rw_register", "check_txn", "check_kafka",
    "Model", "ModelBase", "Register", "CASRegister", "KV", "Counter", "SetModel", "FIFOQueue", "Mutex",
    "MODELS", "model", "NIL",
    "set_full", "counter_bounds", "latency", "quantiles",
    "always", "eventually", "convergence", "availability", "messages_per_op", "fault_windows",
    "FaultWindow", "ClusterView",
    "synthetic_history", "DEFAULT_MIXES",
    "check_raft", "election_safety", "log_matching", "state_machine_safety", "leader_completeness",
    "commit_monotonic", "applied_exactly_once", "leader_within", "progress", "message_budget", "RaftViolation",
]
