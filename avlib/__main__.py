"""Command line: ``python -m avlib COMMAND`` (also installed as ``avlib``).

Commands
  check         versions and [OK]/[FAIL] per required package
  data          generate the dataset of the active profile (AVLIB_PROFILE), if not up to date
  data-report   dataset card and two quick baselines
  run           the main job: pretrain, fine-tune, evaluate, print the results table (figures under runs/)
  predict       top-k instruments for sound / video / image files, folders or globs:
                python -m avlib predict FILE|FOLDER|GLOB... --model DIR
  bench         speed and memory benchmarks
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, function taking argv); imported lazily so `check` works even if something is broken.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("avlib.data.orchestra", "main"),
    "data-report": ("avlib.data.report", "main"),
    "run": ("avlib.experiments", "main"),
    "predict": ("avlib.predict", "main"),
    "bench": ("avlib.bench", "main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "check":
        from avlib.env import check

        return 0 if check() else 1
    if cmd not in COMMANDS:
        print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
        return 2
    module, func = COMMANDS[cmd]
    result = getattr(importlib.import_module(module), func)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
