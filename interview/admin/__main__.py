"""`python -m interview.admin`: the operator's commands, on the database in DATABASE_URL.

    purge --older-than 30d [--dry-run]   erase the interviews that ended more than 30 days ago
    delete <session_id>                  erase one interview (a live one is ended first)

Prints one JSON line with what was done. Exit status: 0 done, 1 failed (one line on stderr
says why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from interview.admin.erasure import InterviewMissing, delete, parse_age, purge
from interview.config import ConfigError, get_settings
from interview.logs import configure_logging


def _age(text: str) -> timedelta:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interview.admin",
        description="Operator commands on the interview database (DATABASE_URL).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    purge_ = commands.add_parser(
        "purge", help="erase the interviews that ended more than an age ago"
    )
    purge_.add_argument(
        "--older-than",
        type=_age,
        required=True,
        metavar="AGE",
        help="how long ago they ended: 12h, 30d, 8w",
    )
    purge_.add_argument(
        "--dry-run", action="store_true", help="only count the interviews it would erase"
    )
    delete_ = commands.add_parser("delete", help="erase one interview")
    delete_.add_argument("session_id", help="the interview's session id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = get_settings()
        # Warnings only, and on stderr: stdout carries the one line of result.
        configure_logging("WARNING")
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
        result: dict[str, Any]
        if args.command == "purge":
            result = asyncio.run(purge(settings, args.older_than, dry_run=args.dry_run))
        else:
            result = asyncio.run(delete(settings, args.session_id))
    except (ConfigError, InterviewMissing, ValueError, RuntimeError) as exc:
        # A bad DATABASE_URL, a database these migrations cannot bring to head, no such id.
        return _fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        return _fail(f"the database is unavailable ({type(exc).__name__})")
    print(json.dumps(result))
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
