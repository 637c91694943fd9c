"""How every pyvde program answers a bad command line: one line naming the problem, then
where to look (GNU's convention), on standard error."""
from __future__ import annotations

import sys


def usage_error(prog: str, message: str) -> str:
    return f"{prog}: {message}\nTry '{prog} --help' for more information."


def answer_usage(prog: str, error: Exception, usage: str) -> int:
    """For parsers whose usage exception says "help" for -h: the help on standard
    output (exit status 0), or the one-line error (exit status 2)."""
    if str(error) == "help":
        sys.stdout.write(usage)
        return 0
    print(usage_error(prog, str(error)), file=sys.stderr)
    return 2
