"""A Jenkins controller emulator for tests (see README.md): HTTP API per Jenkins' own behaviour,
its own label evaluator, and a stand-in inbound agent (agent.jar) that runs builds' shell steps.

Imports nothing from `provisioner`: it is the reference the daemon is tested against.
"""

from .emulator import JenkinsEmulator
from .labels import LabelSyntaxError, get_label, parse_expression

__all__ = ['JenkinsEmulator', 'LabelSyntaxError', 'get_label', 'parse_expression']
