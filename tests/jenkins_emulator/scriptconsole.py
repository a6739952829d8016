"""`POST /scriptText`: no Groovy here. The queue-listing script the daemon sends is
recognised by its markers and answered with the JSON it would print; `print`/`println` of a string
literal (python-jenkins appends `print(")]}.")`) is echoed; every other statement prints nothing.
"""

from __future__ import annotations

import json
import re

from . import queue as Q
from .messages import fmt
from .model import State
from .render import ordered_items

QUEUE_MARKERS = (re.compile(r'Jenkins\.(get\(\)|getInstance\(\)|instance)\.queue'), re.compile(r'\.items\.collect'))
_PRINT = re.compile(r'''^\s*print(ln)?\s*\(?\s*(["'])(.*)\2\s*\)?\s*;?\s*$''')


def queue_json(state: State, locale: str) -> str:
    """What the section 1.5 script prints: Groovy's JsonOutput (compact, non-ASCII as \\uXXXX)."""
    rows, memo = [], Q.Memo(state)
    for item in ordered_items(state):
        label = item.task.assigned_label
        why = Q.cause_of_blockage(state, item, memo)
        rows.append({'id': item.id, 'cls': item.cls, 'buildable': item.state == 'buildable',
                     'pending': item.pending, 'label': label.expression if label else None,
                     'name': item.task.full_display_name, 'why': fmt(why, locale) if why else None,
                     'since': item.in_queue_since})
    return json.dumps(rows, separators=(',', ':'))


def run(state: State, script: str, locale: str) -> str:
    out: list[str] = []
    queue_done = False
    for line in script.splitlines():
        if not queue_done and all(m.search(script) for m in QUEUE_MARKERS) and 'toJson' in line:
            out.append(queue_json(state, locale) + '\n')
            queue_done = True
            continue
        m = _PRINT.match(line)
        if m:
            text = m.group(3).encode('utf-8').decode('unicode_escape') if '\\' in m.group(3) else m.group(3)
            out.append(text + ('\n' if m.group(1) else ''))
    return ''.join(out)
