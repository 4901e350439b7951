"""Plain-text progress bars (no tqdm dependency): redraws in place on a terminal, prints
every 10 % otherwise so logs stay readable."""

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, stream=None):
        self.label = label
        self.total = max(int(total), 1)
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last_decile = -1
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.suffix = ""

    def update(self, done: int, suffix: str = "") -> None:
        self.suffix = suffix
        fraction = min(done / self.total, 1.0)
        elapsed = time.monotonic() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        bar = "#" * int(fraction * 30)
        line = (f"{self.label} [{bar:<30}] {done}/{self.total} "
                f"{elapsed:5.0f}s elapsed, ~{eta:4.0f}s left {suffix}")
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile != self.last_decile:
                self.last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
