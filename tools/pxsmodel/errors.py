"""One exception type for problems with the user's data, so the CLI can print a clear
message (naming the file, row or key) instead of a traceback."""


class DataError(Exception):
    """Bad input data: unreadable image, wrong CSV header, missing file, empty anchor set..."""


def warn(message: str) -> None:
    """Warnings go to stderr so that stdout keeps the report (and the final JSON line)."""
    import sys
    print(message, file=sys.stderr)
