"""The console: header lines, the container's output with a timestamp per line, and the summary.

Colour only when the stream is a terminal and NO_COLOR is unset. Writes are flushed per chunk of
container output, not per line, so a chatty job does not cost a syscall per line.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from datetime import datetime, timezone
from typing import Callable, TextIO

DIM, RED, BOLD, RESET = "\x1b[2m", "\x1b[31m", "\x1b[1m", "\x1b[0m"
MAX_LINE = 64 * 1024  # a longer unterminated line is written out in pieces


def timestamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def wants_colour(stream: TextIO) -> bool:
    try:
        return stream.isatty() and not os.environ.get("NO_COLOR")
    except (AttributeError, ValueError):
        return False


class Console:
    """Writes to `out` (header, stdout lines, summary) and `err` (stderr lines, warnings)."""

    def __init__(self, out: TextIO, err: TextIO, colour: bool | None = None):
        self.out, self.err = out, err
        self.colour = wants_colour(out) if colour is None else colour
        # one lock per stream: a slow reader of stdout must not hold up a warning on stderr
        self._locks = {id(out): threading.Lock(), id(err): threading.Lock()}
        self._dead: set[int] = set()  # streams whose reader went away (broken pipe)
        self._busy: dict[int, bool] = {}  # per stream (set under its lock): a write in progress
        self.dropped = 0              # output lines not shown because their reader went away

    @property
    def writing(self) -> bool:
        """Whether a write is in progress (a slow reader holds it up)."""
        return any(self._busy.values())

    def _paint(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text

    def reader_gone(self) -> bool:
        """Whether the reader of the job's stdout went away (`| head`)."""
        return id(self.out) in self._dead

    def _write(self, stream: TextIO, text: str) -> bool:
        """Write and flush (waiting for a slow reader as long as it takes); False when not written.
        A reader that went away (`| head`) silences the console instead of failing the run: the
        job goes on and its exit code stays the job's."""
        if id(stream) in self._dead:
            return False
        with self._locks.setdefault(id(stream), threading.Lock()):
            self._busy[id(stream)] = True
            try:
                stream.write(text)
                stream.flush()
                return True
            except (OSError, ValueError):
                self._dead.add(id(stream))
                _silence(stream)
                return False
            finally:
                self._busy[id(stream)] = False

    def info(self, text: str) -> None:
        self._write(self.out, text + "\n")

    def header(self, pairs: list[tuple[str, str]]) -> None:
        self._write(self.out, "".join(f"{self._paint(name + ':', BOLD)} {value}\n"
                                      for name, value in pairs))

    def warn(self, text: str) -> None:
        self._write(self.err, f"provisioner: warning: {text}\n")

    def lines(self, ts: float, lines: list[str], is_stderr: bool) -> None:
        """Container output lines received at `ts` (stderr lines go to err, painted red)."""
        stamp = self._paint(timestamp(ts), DIM)
        body = "".join(f"{stamp} {self._paint(line, RED) if is_stderr else line}\n" for line in lines)
        if not self._write(self.err if is_stderr else self.out, body):
            self.dropped += len(lines)


def _silence(stream: TextIO) -> None:
    """Point a dead stream's descriptor at /dev/null, so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class LineSplitter:
    """Bytes of one stream in, whole decoded lines out (partial UTF-8 sequences kept for later)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""

    def feed(self, data: bytes) -> list[str]:
        self._buf += self._decoder.decode(data)
        *lines, self._buf = self._buf.split("\n")
        while len(self._buf) > MAX_LINE:
            lines.append(self._buf[:MAX_LINE])
            self._buf = self._buf[MAX_LINE:]
        return [line.rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        return [rest.rstrip("\r")] if rest else []


class LogPump:
    """Reads a demultiplexed attach stream ((stdout, stderr) chunks) on a thread and hands lines to
    the console and to every log sink (`write(ts, line)`). A failing sink is dropped, not fatal."""

    def __init__(self, stream, console: Console, sinks: list, clock=time.time):
        self._stream, self._console, self._sinks, self._clock = stream, console, list(sinks), clock
        self._split = (LineSplitter(), LineSplitter())
        self.lines = 0
        self.bytes_in = 0  # read from the engine so far: the drain's measure of progress
        self.thread = threading.Thread(target=self._run, name="provisioner-logs", daemon=True)

    def start(self) -> "LogPump":
        self.thread.start()
        return self

    def _emit(self, lines: list[str], is_stderr: bool) -> None:
        if not lines:
            return
        ts = self._clock()
        self.lines += len(lines)
        self._console.lines(ts, lines, is_stderr)
        for sink in list(self._sinks):
            try:
                for line in lines:
                    sink.write(ts, line)
            except Exception as exc:  # a sink must never stop the console
                self._sinks.remove(sink)
                self._console.warn(f"log sink {type(sink).__name__} failed and was dropped: {exc}")

    def _run(self) -> None:
        try:
            for out, err in self._stream:
                self.bytes_in += len(out or b"") + len(err or b"")
                if out:
                    self._emit(self._split[0].feed(out), False)
                if err:
                    self._emit(self._split[1].feed(err), True)
        except Exception as exc:  # engine gone, stream closed under us
            if not getattr(self, "_closing", False):
                self._console.warn(f"log stream ended: {exc}")
        finally:
            self._emit(self._split[0].flush(), False)
            self._emit(self._split[1].flush(), True)

    def join(self, timeout: float) -> None:
        """Wait for the stream's end; close it when it has not ended by then."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self._close()

    def drain(self, idle_s: float, gone_s: float, stop: Callable[[], bool] = lambda: False,
              monotonic: Callable[[], float] = time.monotonic) -> bool:
        """Wait for the end of the output after the job's exit; True when it was all copied.

        The exit does not end the copy: as long as output arrives or the console is taking it
        (a slow reader: a write is in progress), this waits, however long it takes. The wait is
        bounded only when nothing moves: `gone_s` once the console's reader is gone (the rest is
        counted as dropped), `idle_s` while the engine sends nothing yet keeps the stream open;
        and `stop()` (a signal) ends it."""
        last, quiet_since = None, monotonic()
        while True:
            self.thread.join(0.2)
            if not self.thread.is_alive():
                return True
            progress = (self.bytes_in, self.lines)
            if progress != last or self._console.writing:
                last, quiet_since = progress, monotonic()
            limit = gone_s if self._console.reader_gone() else idle_s
            if stop() or monotonic() - quiet_since >= limit:
                self._close()
                return False

    def _close(self) -> None:
        self._closing = True
        try:
            self._stream.close()
        except Exception:
            pass
        self.thread.join(1.0)
