"""getopt's way with option values that argparse lacks, for the programs whose command
lines come from C tools: a value may start with '-' (`-L -1:...` is a bad forward, not a
missing value; `-P -odd.pid` is a file)."""
from __future__ import annotations


def glue_values(argv: list[str], takes_value: frozenset[str],
                alone: dict[str, str] | None = None) -> list[str]:
    """argv with each value of an option in `takes_value` glued to it (`--opt=VALUE`,
    `-oVALUE`), so argparse takes it whatever it starts with; an argument in `alone`
    (an option whose value is optional, given without one) is replaced by its spelling
    there. Stops at `--`."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return out + argv[i:]
        if alone and arg in alone:
            out.append(alone[arg])
        elif arg in takes_value and argv[i + 1:i + 2] and argv[i + 1].startswith("-"):
            i += 1
            out.append(f"{arg}={argv[i]}" if arg.startswith("--") else arg + argv[i])
        else:
            out.append(arg)
        i += 1
    return out
