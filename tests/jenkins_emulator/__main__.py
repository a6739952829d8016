"""Run the emulator standalone: `python -m tests.jenkins_emulator --port 8080 --user admin:token:admin`.

Jobs can be declared on the command line (`--job NAME=LABEL` freestyle, `--pipeline NAME=LABEL`,
with `--script` as their shell step); everything else goes through the HTTP API.
"""

from __future__ import annotations

import argparse
import signal
import threading

from .emulator import JenkinsEmulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m tests.jenkins_emulator', description=__doc__)
    p.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (default: a free one)')
    p.add_argument('--user', action='append', default=[], metavar='NAME:TOKEN[:admin]',
                   help='an account with an API token; ":admin" grants Overall/Administer (repeatable)')
    p.add_argument('--builtin-executors', type=int, default=0)
    p.add_argument('--quiet-period', type=float, default=0.0, help='seconds')
    p.add_argument('--maintain-interval', type=float, default=0.5, help='seconds between Queue#maintain passes')
    p.add_argument('--locale', default='de', help='locale when a request has no Accept-Language (en or de)')
    p.add_argument('--no-csrf', action='store_true', help='no crumb issuer (404), no crumb checks')
    p.add_argument('--job', action='append', default=[], metavar='NAME=LABEL', help='a freestyle job')
    p.add_argument('--pipeline', action='append', default=[], metavar='NAME=LABEL', help="a node('LABEL') pipeline")
    p.add_argument('--script', default='echo hello', help="the jobs' shell step")
    args = p.parse_args(argv)

    users: dict[str, tuple[str, bool]] = {}
    for spec in args.user or ['admin:admin-token:admin']:
        name, token, *rest = spec.split(':')
        users[name] = (token, rest == ['admin'])
    emu = JenkinsEmulator(users, port=args.port, builtin_executors=args.builtin_executors,
                          quiet_period=args.quiet_period, maintain_interval=args.maintain_interval,
                          default_locale=args.locale, csrf=not args.no_csrf)
    for kind, specs in (('freestyle', args.job), ('pipeline', args.pipeline)):
        for spec in specs:
            name, _, label = spec.partition('=')
            emu.create_job(name, label=label or None, kind=kind, script=args.script)
    emu.start()
    print(f'Jenkins emulator at {emu.url} (session {emu.session}); Ctrl-C stops it', flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    emu.stop()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
