"""`recsys-spark ARGS` that dies by SIGKILL, as `kill -9` would, when a table commit passes POINT
(one of infra.versions.SWITCH_POINTS): python tests/kill_at.py POINT ARGS... The hook is installed
here, by the test's own process, so the library reads no test switch of its own."""

import os
import signal
import sys

from recsys_spark import cli
from recsys_spark.infra import versions


def main() -> int:
    point, *args = sys.argv[1:]
    if point not in versions.SWITCH_POINTS:
        raise SystemExit(f"kill_at.py: {point!r} is not one of {versions.SWITCH_POINTS}")

    def kill(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    versions.on_switch_point(kill)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
