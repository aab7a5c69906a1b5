"""``from maelstrom import Node``: labkit's Maelstrom program library under a short name.

``labkit.Program`` puts this directory on its programs' ``PYTHONPATH``; this module runs
``labkit/maelstrom/node.py`` (stdlib only) as itself, so a program needs nothing installed.
To run the same program under Maelstrom, copy ``node.py`` next to it as ``maelstrom.py``.
"""
import os as _os

_path = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "node.py")
with open(_path, encoding="utf-8") as _f:
    exec(compile(_f.read(), _path, "exec"))
