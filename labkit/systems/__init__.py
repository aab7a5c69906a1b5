"""Reference systems: complete, tested implementations the chapters run and compare
against (Raft; partitioned and replicated stores; the resilience patterns of chapter 06 --
``retry``, ``breaker``, ``resilience`` -- and its call-chain bench ``callchain``; brokers and
commit protocols later).
They are kept apart from the bench that runs them (``labkit.runtime.base``), the way etcd keeps
its Raft core apart from its transport and storage."""
