"""``xenstore <mode> ...``: the single binary that the C clients all are.

The mode comes from the program name when it is ``xenstore-<mode>`` (so a
link named ``xenstore-read`` to this command reads), else from the first
argument; in the latter case getopt's messages name the mode word
(``read: invalid option -- 'x'``) and the usage line includes it. Modes are
read, write, rm, exists, list, ls, chmod and watch.
"""

from __future__ import annotations

from xenstore.tools import common

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore``; ``argv`` excludes the program name."""
    return common.main(None, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())
