"""labkit.maelstrom: run Maelstrom-protocol programs in a labkit cluster (placeholder; the
harness branch owns this file's final content)."""
