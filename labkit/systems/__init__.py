"""Reference systems: complete, tested implementations the chapters run and compare
against (Raft now; partitioned and replicated stores, brokers and commit protocols later).
They are kept apart from the bench that runs them (``labkit.runtime.base``), the way etcd keeps
its Raft core apart from its transport and storage."""
