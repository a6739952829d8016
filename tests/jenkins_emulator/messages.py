"""Localised message strings (core Messages.properties, byte-exact for English).

Causes of blockage are kept as (key, args) and formatted per request, because Jenkins formats
`why` in the request's `Accept-Language` locale. German stands in for "some other locale" so a
client that forgets `Accept-Language: en` sees strings its patterns do not match.
"""

from __future__ import annotations

Message = tuple[str, tuple[object, ...]]

EN = {
    'Queue.LabelHasNoNodes': 'There are no nodes with the label ‘{0}’',
    'Queue.AllNodesOffline': 'All nodes of label ‘{0}’ are offline',
    'Queue.NodeOffline': '‘{0}’ is offline',
    'Queue.WaitingForNextAvailableExecutorOn': 'Waiting for next available executor on ‘{0}’',
    'Queue.WaitingForNextAvailableExecutor': 'Waiting for next available executor',
    'Queue.HudsonIsAboutToShutDown': 'Jenkins is about to shut down',
    'Queue.InQuietPeriod': 'In the quiet period. Expires in {0}',
    'Queue.FinishedWaiting': 'Finished waiting',
    'Queue.BlockedBy': 'Blocked by ‘{0}’',
    'Queue.InProgress': 'A build is already in progress',
    'Node.LabelMissing': '‘{0}’ doesn’t have label ‘{1}’',
    'Node.BecauseNodeIsReserved': '‘{0}’ is reserved for jobs with matching label expression',
    'Node.BecauseNodeIsNotAcceptingTasks': '‘{0}’ is not accepting tasks',
    'BlockedBecauseOfBuildInProgress': 'Build #{0} is already in progress{1}',
    'BlockedBecauseOfBuildInProgress.ETA': ' (ETA: {0})',
    'Composite.More': '... and {0} more',
    'Util.hour': '{0} hr', 'Util.minute': '{0} min', 'Util.second': '{0} sec', 'Util.millisecond': '{0} ms',
}

DE = {
    'Queue.LabelHasNoNodes': 'Es gibt keine Knoten mit dem Label ‘{0}’',
    'Queue.AllNodesOffline': 'Alle Knoten des Labels ‘{0}’ sind offline',
    'Queue.NodeOffline': '‘{0}’ ist offline',
    'Queue.WaitingForNextAvailableExecutorOn': 'Warte auf den nächsten freien Build-Prozessor auf ‘{0}’',
    'Queue.WaitingForNextAvailableExecutor': 'Warte auf den nächsten freien Build-Prozessor',
    'Queue.HudsonIsAboutToShutDown': 'Jenkins wird heruntergefahren',
    'Queue.InQuietPeriod': 'In der Ruheperiode. Endet in {0}',
    'Queue.FinishedWaiting': 'Warten beendet',
    'Queue.BlockedBy': 'Blockiert durch ‘{0}’',
    'Queue.InProgress': 'Ein Build ist bereits in Arbeit',
    'Node.LabelMissing': '‘{0}’ hat das Label ‘{1}’ nicht',
    'Node.BecauseNodeIsReserved': '‘{0}’ ist für Jobs mit passendem Label-Ausdruck reserviert',
    'Node.BecauseNodeIsNotAcceptingTasks': '‘{0}’ nimmt keine Aufgaben an',
    'BlockedBecauseOfBuildInProgress': 'Build #{0} ist bereits in Arbeit{1}',
    'BlockedBecauseOfBuildInProgress.ETA': ' (Voraussichtlich: {0})',
    'Composite.More': '... und {0} weitere',
    'Util.hour': '{0} Std.', 'Util.minute': '{0} Min.', 'Util.second': '{0} Sek.', 'Util.millisecond': '{0} ms',
}

CATALOGS = {'en': EN, 'de': DE}


def locale_for(accept_language: str | None, default: str) -> str:
    """Pick 'en' or 'de' from an Accept-Language header (highest q wins); else the server default."""
    best, best_q = None, -1.0
    for part in (accept_language or '').split(','):
        tag, _, params = part.strip().partition(';')
        q = 1.0
        if params.strip().startswith('q='):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower()[:2]
        if lang in CATALOGS and q > best_q:
            best, best_q = lang, q
    return best or default


def fmt(msg: Message, locale: str) -> str:
    """Format one message; args that are Messages are formatted recursively (in the same locale)."""
    key, args = msg
    if key == 'Composite':
        # CompositeCauseOfBlockage: unique reasons, sorted (TreeMap), joined; long lists abbreviated.
        reasons = sorted({fmt(m, locale) for m in args})  # type: ignore[arg-type]
        shown = reasons[:5] + ([fmt(('Composite.More', (len(reasons) - 5,)), locale)] if len(reasons) > 5 else [])
        return '; '.join(shown)
    catalog = CATALOGS.get(locale, EN)
    text = catalog.get(key, EN[key])
    for i, arg in enumerate(args):
        value = fmt(arg, locale) if isinstance(arg, tuple) else str(arg)  # type: ignore[arg-type]
        text = text.replace('{%d}' % i, value)
    return text


def time_span(ms: int) -> Message:
    """`Util.getTimeSpanString`, as a message so the units follow the locale."""
    ms = max(0, int(ms))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    if hours:
        return ('Util.span2', (('Util.hour', (hours,)), ('Util.minute', (minutes,))))
    if minutes:
        return ('Util.span2', (('Util.minute', (minutes,)), ('Util.second', (seconds,))))
    if seconds >= 10:
        return ('Util.second', (seconds,))
    if seconds >= 1:
        return ('Util.second', (f'{seconds + (millis // 100) / 10:.1f}',))
    if millis >= 100:
        return ('Util.second', (f'{millis / 1000:.2f}'.rstrip('0'),))
    return ('Util.millisecond', (millis,))


EN['Util.span2'] = DE['Util.span2'] = '{0} {1}'
