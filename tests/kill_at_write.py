"""The reliability tests' fault injection, kept out of clgraft: run clgraft's CLI in this process after making it
SIGKILL itself at its N-th atomic write ("N:tmp": temp file written, before the rename; "N:done": just after it).

Usage: python tests/kill_at_write.py N:PHASE CLGRAFT-ARGS...
"""

import os
import signal
import sys
from pathlib import Path


def install(point: str) -> None:
    """Wrap os.replace so that the renames clgraft's atomic writes make (a hidden `.NAME.*.tmp` onto NAME) count."""
    target, phase = point.split(":")
    real_replace, writes = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        atomic = Path(src).name.startswith(f".{Path(dst).name}.") and str(src).endswith(".tmp")
        writes[0] += atomic
        if atomic and phase == "tmp" and writes[0] == int(target):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if atomic and phase == "done" and writes[0] == int(target):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


if __name__ == "__main__":
    if sys.argv[1]:
        install(sys.argv[1])
    sys.argv = ["clgraft", *sys.argv[2:]]
    from clgraft.cli import main

    main()
