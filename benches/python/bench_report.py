"""What the benchmark scripts beside this file share: their command line, how a failed workload
is described, and how their report is written for `cargo xtask bench` to read."""

import argparse
import json
import platform
import sys


def parse_args(doc):
    """`[--quick] [--json PATH]`, described by the first line of the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes: proves the script works")
    parser.add_argument("--json", metavar="PATH", help="write the figures here instead of stdout")
    return parser.parse_args()


def failure(err, limit_s, timeout_type):
    """A failed workload's message: its time limit when it was a timeout, else the error."""
    if isinstance(err, timeout_type):
        return f"timed out after {limit_s} s"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def write(path, suite, version, args, params, figures, errors, **extra):
    """Writes the report of `suite` (the package measured, at `version`) as indented JSON to
    `path`, or to stdout without one; `extra` adds fields of that script's own."""
    doc = {
        "suite": suite,
        "version": version,
        "python": platform.python_version(),
        "quick": args.quick,
        "params": params,
        "figures": figures,
        **extra,
        "errors": errors,
    }
    text = json.dumps(doc, indent=2) + "\n"
    if path:
        with open(path, "w") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
