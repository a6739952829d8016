"""LogPump.drain: after the job's exit the copy goes on while output moves or the console is taking
it; it is bounded only when nothing moves or the console's reader is gone (then lines are counted
as dropped). The engine side is a fake stream here; tests/runner/test_console_slow_reader.py runs
the same on the real engine."""

from __future__ import annotations

import io
import threading
import time

from provisioner.runner.console import Console, LogPump


class SlowOut(io.StringIO):
    """A console stream whose reader takes `delay_s` per write."""

    def __init__(self, delay_s: float):
        super().__init__()
        self.delay_s = delay_s

    def write(self, text: str) -> int:
        time.sleep(self.delay_s)
        return super().write(text)


class GoneOut(io.StringIO):
    """A console stream whose reader went away after `keep` writes."""

    def __init__(self, keep: int):
        super().__init__()
        self.keep = keep

    def write(self, text: str) -> int:
        if self.keep <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.keep -= 1
        return super().write(text)

    def fileno(self) -> int:
        raise OSError("no descriptor")


class Stream:
    """(stdout, stderr) chunks; `hang` keeps the stream open after them until closed."""

    def __init__(self, chunks: list[bytes], hang: bool = False):
        self.chunks, self.hang, self.closed = chunks, hang, threading.Event()

    def __iter__(self):
        for chunk in self.chunks:
            yield chunk, None
        if self.hang:
            self.closed.wait()
            raise OSError("stream closed")

    def close(self) -> None:
        self.closed.set()


def chunks(lines: int, per_chunk: int = 100) -> list[bytes]:
    return [b"".join(b"%d\n" % n for n in range(i, min(i + per_chunk, lines)))
            for i in range(0, lines, per_chunk)]


def test_slow_console_gets_every_line_past_any_idle_limit():
    out = SlowOut(0.05)  # 50 chunks x 0.05 s = 2.5 s, far past the 0.3 s limits below
    console = Console(out, io.StringIO(), colour=False)
    pump = LogPump(Stream(chunks(5000)), console, []).start()
    assert pump.drain(idle_s=0.3, gone_s=0.3) is True
    assert pump.lines == 5000 and out.getvalue().count("\n") == 5000
    assert console.dropped == 0


def test_reader_gone_counts_the_dropped_lines_and_the_true_total():
    console = Console(GoneOut(keep=3), io.StringIO(), colour=False)
    pump = LogPump(Stream(chunks(5000)), console, []).start()
    assert pump.drain(idle_s=30, gone_s=1) is True
    assert pump.lines == 5000
    assert console.dropped == 5000 - 300 and console.reader_gone()


def test_a_stream_that_never_ends_is_closed_once_nothing_moves():
    console = Console(io.StringIO(), io.StringIO(), colour=False)
    stream = Stream(chunks(300), hang=True)
    pump = LogPump(stream, console, []).start()
    started = time.monotonic()
    assert pump.drain(idle_s=0.5, gone_s=0.5) is False
    assert 0.5 <= time.monotonic() - started < 5
    assert pump.lines == 300 and not pump.thread.is_alive()


def test_a_signal_ends_the_wait():
    console = Console(io.StringIO(), io.StringIO(), colour=False)
    pump = LogPump(Stream(chunks(10), hang=True), console, []).start()
    assert pump.drain(idle_s=60, gone_s=60, stop=lambda: True) is False
