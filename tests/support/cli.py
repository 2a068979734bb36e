"""`monitor ...` run in the test's own process: for tests of what a command does, not of the process itself
(each process start costs a second or more of imports). The answer looks like a finished process's."""

from __future__ import annotations

import contextlib
import io
import subprocess

from monitor import cli


def run_monitor(*args) -> subprocess.CompletedProcess:
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["monitor", *argv], code, out.getvalue(), err.getvalue())
