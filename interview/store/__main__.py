"""The store's developer command: `python -m interview.store revision "add x"` (make migration)."""

from __future__ import annotations

import argparse

from interview.store.migrate import new_revision


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m interview.store")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="autogenerate a new migration revision")
    revision.add_argument("message", help='what the revision does, e.g. "add x to sessions"')
    args = parser.parse_args()
    path = new_revision(args.message)
    print(f"wrote {path}: review it (autogenerate misses renames and data changes)")


if __name__ == "__main__":
    main()
