"""`python -m bridge.http.password`: ask for a password (twice, never echoed, never on a command line)
and print the scrypt hash to put in `http.password_hash`, for the frontend's login."""

from __future__ import annotations

import getpass
import sys

from bridge.http.session import hash_password


def main() -> int:
    if sys.stdin.isatty():
        first = getpass.getpass("Password for the bridge's web page: ")
        if first != getpass.getpass("Again: "):
            print("the two did not match; nothing printed", file=sys.stderr)
            return 1
    else:  # piped in (a script, a test): the first line
        first = sys.stdin.readline().rstrip("\n")
    if len(first) < 8:
        print("use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
