"""SecuMon from Python.

Probe checks run in Rust with the GIL released and return :class:`CheckResult`::

    import secumon
    result = secumon.scan_ports("127.0.0.1", ports="22,80,443")
    print(result.status, result.details["ports"])

Scanner reports parse with :func:`secumon.findings.parse`; :class:`Client` talks to a
SecuMon server (import findings, list findings and alerts, query series).
"""

from ._secumon import CheckResult, Client, Finding, dns, http_check, ping, scan_ports, tls
from . import findings

__all__ = ["CheckResult", "Client", "Finding", "dns", "findings", "http_check", "ping", "scan_ports", "tls"]
