"""SecuMon from Python.

Probe checks run in Rust with the GIL released and return :class:`CheckResult`::

    import secumon
    result = secumon.scan_ports("127.0.0.1", ports="22,80,443")
    print(result.status, result.details["ports"])

Any check can also be built from its spec, as written in ``probe.yaml``::

    secumon.check({"type": "snmp", "host": "127.0.0.1", "oids": ["sysDescr.0"]}).text

Scanner reports parse with :func:`secumon.findings.parse`; :class:`Client` talks to a
SecuMon server (import findings, list findings and alerts, push and query series), and
:class:`AsyncClient` does the same for asyncio, each method returning an awaitable::

    findings = await secumon.AsyncClient(url, token=token).findings(severity="critical")
"""

from ._secumon import AsyncClient, CheckResult, Client, Finding, check, dns, http_check, ping, scan_ports, snmp, tls, trace
from . import errors, findings
from .errors import SecuMonError

__all__ = [
    "AsyncClient", "CheckResult", "Client", "Finding", "SecuMonError", "check", "errors", "dns", "findings", "http_check", "ping", "scan_ports", "snmp", "tls",
    "trace",
]
