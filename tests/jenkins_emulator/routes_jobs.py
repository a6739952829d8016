"""`/job/a/job/b/...`: job and folder JSON, build triggers (201 + Location of the queue item),
builds' JSON and console, stop (section 6).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from . import render
from .export import render as export
from .handler import HttpError, Request, Response, html, json_response
from .model import Build, Job
from .routes import Router, redirect

if TYPE_CHECKING:
    from .emulator import JenkinsEmulator

_IGNORED_PARAMS = {'token', 'delay', 'cause', 'json', 'Jenkins-Crumb', 'Submit'}


def _delay(value: str | None) -> float | None:
    m = re.fullmatch(r'(\d+)\s*(sec|secs|s)?', value or '')
    return float(m.group(1)) if m else None


class JobRoutes:
    def __init__(self, emu: 'JenkinsEmulator') -> None:
        self.emu = emu

    def register(self, r: Router) -> None:
        path = r'/((?:job/[^/]+/)*job/[^/]+)'
        r.add('GET', path + r'/api/json', self.info)
        r.add('GET', path + r'/?', self.page)
        r.add('POST', path + r'/build', self.build)
        r.add('POST', path + r'/buildWithParameters', self.build)
        r.add('GET', path + r'/(\d+|lastBuild|lastCompletedBuild|lastSuccessfulBuild)/api/json', self.build_info)
        r.add('GET', path + r'/(\d+|lastBuild|lastCompletedBuild|lastSuccessfulBuild)/consoleText', self.console)
        r.add('GET', path + r'/(\d+)/?', self.build_page)
        r.add('POST', path + r'/(\d+)/stop', self.stop)

    @staticmethod
    def _name(path: str) -> str:
        return '/'.join(path.split('/')[1::2])        # job/a/job/b -> a/b

    def _job(self, path: str) -> Job:
        job = self.emu.state.jobs.get(self._name(path))
        if job is None:
            raise HttpError(404, 'Not Found')
        return job

    def _build(self, path: str, which: str) -> Build:
        job = self._job(path)
        done = [b for b in job.builds if not b.building]
        pick = {'lastBuild': job.builds[-1:], 'lastCompletedBuild': done[-1:],
                'lastSuccessfulBuild': [b for b in done if b.result == 'SUCCESS'][-1:]}.get(which)
        if pick is None:
            pick = [b for b in job.builds if b.number == int(which)]
        if not pick:
            raise HttpError(404, 'Not Found')
        return pick[0]

    def info(self, req: Request, path: str) -> Response:
        emu = self.emu
        with emu.state.lock:
            name = self._name(path)
            if name in emu.state.folders:
                bean = render.folder_bean(emu.state, name, emu.url)
            else:
                bean = render.job_bean(emu.state, self._job(path), emu.url)
            return json_response(export(bean, req.query), req.query)

    def page(self, req: Request, path: str) -> Response:
        with self.emu.state.lock:
            if self._name(path) not in self.emu.state.folders:
                self._job(path)
        return html(200, f'{self._name(path)} [Jenkins]')

    def build(self, req: Request, path: str) -> Response:
        params = {k: v for k, v in {**req.query, **req.form}.items() if k not in _IGNORED_PARAMS}
        with self.emu.state.lock:
            job = self._job(path)
        user = req.user.name if req.user else None
        qid = self.emu.schedule(job.full_name, params or None, user=user,
                                quiet_period=_delay(req.query.get('delay')))
        return Response(201, b'', headers={'Location': f'{self.emu.url}queue/item/{qid}/'})

    def build_info(self, req: Request, path: str, which: str) -> Response:
        with self.emu.state.lock:
            bean = render.build_bean(self._build(path, which), self.emu.url)
            return json_response(export(bean, req.query), req.query)

    def console(self, req: Request, path: str, which: str) -> Response:
        with self.emu.state.lock:
            text = ''.join(self._build(path, which).console)
        return Response(200, text.encode('utf-8'))

    def build_page(self, req: Request, path: str, number: str) -> Response:
        with self.emu.state.lock:
            self._build(path, number)
        return html(200, f'{self._name(path)} #{number} [Jenkins]')

    def stop(self, req: Request, path: str, number: str) -> Response:
        with self.emu.state.lock:
            build = self._build(path, number)
        self.emu.stop_build(build.job.full_name, build.number)
        return redirect(self.emu.url + build.rel_url)
