"""Alerts on failed, timed-out, OOM-killed and interrupted runs and on budget thresholds, to Slack,
SMTP or SNS; deduplicated and rate-limited with their state in the history store.

`config` holds the `alerts` section's values (provisioner.config parses them at load; imported there, so it
stays light), `events` decides (pure) what a record or a period's spend raises, `state` keeps
dedup/rate-limit state, `sinks` deliver, `dispatch` (the Alerter) ties them together. Import the
submodules directly.
"""
