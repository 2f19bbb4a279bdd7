"""The ``agentmesh`` command: ``python -m agentmesh ARGS`` and the ``agentmesh`` console script.

It is the Rust CLI itself, linked into the native module (``_agentmesh.cli_main``): the same
commands, output and exit codes as the ``agentmesh`` binary (docs/cli.md).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Optional, Sequence

from . import _agentmesh


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns its exit code.

    While it runs, Ctrl-C (SIGINT) stops the process the way it stops the binary, with the
    signal's default action: the native command cannot see a ``KeyboardInterrupt`` until it
    returns, and ``inspect --follow`` only returns when the run ends.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # The command writes to the file descriptors directly: what Python buffered goes first.
    sys.stdout.flush()
    sys.stderr.flush()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL) if in_main_thread else None
    try:
        return int(_agentmesh.cli_main(args))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
