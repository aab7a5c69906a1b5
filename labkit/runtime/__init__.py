"""labkit's runtimes: what runs a cluster's nodes.

- ``base``: what both runtimes share (node records, client requests, crash reports);
- ``sim``: the deterministic simulator (virtual time, one event heap);
- ``processes``: one OS process per node over ZeroMQ, and ``child``, the node process's loop;
- ``scheduler``: the timer heap both use; ``network``: the fault model of links;
- ``storage``: ``ctx.storage``'s write-ahead log; ``host``: directories, descriptors;
  ``pickling``: how node classes travel to node processes.

These are labkit's internals: a reader writes a ``labkit.Node`` and starts a ``labkit.Cluster``.
"""
