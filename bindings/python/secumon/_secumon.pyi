from os import PathLike
from typing import Any, Awaitable, Dict, List, Optional, Sequence, Tuple, Union, final

__all__ = [
    "CheckResult", "Finding", "Client", "AsyncClient", "ping", "scan_ports", "tls", "http_check", "dns", "snmp",
    "trace", "check", "parse_findings",
]

_Sample = Union[Tuple[str, float], Tuple[str, float, Dict[str, str]], Dict[str, Any]]

# Native classes: they cannot be subclassed.
@final
class CheckResult:
    check_id: str
    kind: str
    target: str
    status: str
    duration_ms: float
    timestamp_ms: int
    json: str
    @property
    def ok(self) -> bool: ...
    @property
    def details(self) -> Dict[str, Any]: ...
    @property
    def text(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Finding:
    id: str
    severity: str
    asset: str
    title: str
    description: str
    status: str
    first_seen_ms: int
    last_seen_ms: int
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Client:
    """The server's REST API; every call blocks (the GIL released) until the server answers."""
    def __new__(cls, url: str = "http://127.0.0.1:8080", token: Optional[str] = None) -> "Client": ...
    def import_findings(
        self, source: Union[str, "PathLike[str]", bytes], format: str = "auto", full_scan: bool = True
    ) -> Dict[str, Any]: ...
    def findings(
        self, asset: Optional[str] = None, severity: Optional[str] = None, status: Optional[str] = None, limit: int = 100
    ) -> List[Finding]: ...
    def push(
        self,
        host: str,
        samples: Optional[Sequence[_Sample]] = None,
        events: Optional[Sequence[Dict[str, Any]]] = None,
        source: str = "python",
    ) -> Dict[str, Any]: ...
    def alerts(self, status: Optional[str] = None, severity: Optional[str] = None) -> List[Dict[str, Any]]: ...
    def query(
        self, host: str, metric: str, period: str = "1h", step: Optional[str] = None, agg: str = "avg"
    ) -> Dict[str, Any]: ...

@final
class AsyncClient:
    """The same calls as :class:`Client` for asyncio: each returns an awaitable (an asyncio
    future), the call running on SecuMon's own threads while the event loop goes on."""
    def __new__(cls, url: str = "http://127.0.0.1:8080", token: Optional[str] = None) -> "AsyncClient": ...
    def import_findings(
        self, source: Union[str, "PathLike[str]", bytes], format: str = "auto", full_scan: bool = True
    ) -> Awaitable[Dict[str, Any]]: ...
    def findings(
        self, asset: Optional[str] = None, severity: Optional[str] = None, status: Optional[str] = None, limit: int = 100
    ) -> Awaitable[List[Finding]]: ...
    def push(
        self,
        host: str,
        samples: Optional[Sequence[_Sample]] = None,
        events: Optional[Sequence[Dict[str, Any]]] = None,
        source: str = "python",
    ) -> Awaitable[Dict[str, Any]]: ...
    def alerts(self, status: Optional[str] = None, severity: Optional[str] = None) -> Awaitable[List[Dict[str, Any]]]: ...
    def query(
        self, host: str, metric: str, period: str = "1h", step: Optional[str] = None, agg: str = "avg"
    ) -> Awaitable[Dict[str, Any]]: ...

def ping(host: str, count: int = 5, interval: float = 0.2, timeout: float = 1.0) -> CheckResult: ...
def scan_ports(
    host: str, ports: str = "1-1024", concurrency: int = 500, timeout: float = 1.0, expect_open: Optional[Sequence[int]] = None
) -> CheckResult: ...
def tls(
    host: str, port: int = 443, server_name: Optional[str] = None, starttls: Optional[str] = None,
    ca_file: Optional[Union[str, "PathLike[str]"]] = None,
) -> CheckResult: ...
def http_check(
    url: str, method: str = "GET", headers: Optional[Sequence[Tuple[str, str]]] = None, body: Optional[str] = None,
    expect_status: Optional[Sequence[int]] = None, contains: Optional[str] = None, regex: Optional[str] = None,
    max_latency: Optional[float] = None, max_redirects: int = 5, ca_file: Optional[Union[str, "PathLike[str]"]] = None,
) -> CheckResult: ...
def dns(
    name: str, record_type: str = "A", resolvers: Optional[Sequence[str]] = None, expect: Optional[Sequence[str]] = None,
    timeout: float = 3.0,
) -> CheckResult: ...
def snmp(
    host: str, oids: Optional[Sequence[str]] = None, port: int = 161, version: str = "2c", community: str = "public",
    user: Optional[str] = None, auth_protocol: str = "SHA", auth_password: Optional[str] = None,
    priv_protocol: str = "AES", priv_password: Optional[str] = None, walk: bool = False, timeout: float = 2.0,
) -> CheckResult: ...
def trace(
    host: str, mode: str = "icmp", rounds: int = 10, max_hops: int = 30, port: Optional[int] = None,
    reverse_dns: bool = False,
) -> CheckResult: ...
def check(spec: Dict[str, Any], name: Optional[str] = None, deadline: float = 120.0) -> CheckResult: ...
def parse_findings(source: Union[str, "PathLike[str]", bytes], format: str = "auto") -> List[Finding]: ...
