"""The `secumon` module on loopback targets and against a running server (the debug
`secumon` binary, found through $SECUMON_BIN or target/debug/secumon)."""

import asyncio
import http.server
import json
import os
import pathlib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

import secumon

ROOT = pathlib.Path(__file__).resolve().parents[3]
REPORTS = ROOT / "secumon-findings" / "tests" / "reports"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ping_loopback():
    result = secumon.ping("127.0.0.1", count=3, interval=0.05)
    assert result.ok, result.to_dict()
    assert result.details["received"] == 3
    assert any(s["series"]["name"] == "ping_rtt_avg_seconds" for s in result.to_dict()["samples"])


def test_scan_ports_states_and_expectations():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = secumon.scan_ports("127.0.0.1", ports=str(port), expect_open=[port])
        assert result.ok
        assert result.details["ports"] == {str(port): "open"}
    closed = secumon.scan_ports("127.0.0.1", ports=str(port), expect_open=[port])
    assert closed.status == "critical"
    with pytest.raises(ValueError, match="backwards"):
        secumon.scan_ports("127.0.0.1", ports="90-80")
    with pytest.raises(ValueError, match="timeout"):
        secumon.scan_ports("127.0.0.1", ports="80", timeout=-1)


def test_any_check_from_its_spec():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = secumon.check({"type": "tcp", "host": "127.0.0.1", "port": port, "port_timeout": "2s"}, name="web")
        assert result.ok and result.check_id == "web", result.to_dict()
        assert f"{port}/tcp" in result.text and "open" in result.text
    with pytest.raises(ValueError, match="colour"):
        secumon.check({"type": "ping", "host": "127.0.0.1", "colour": "red"})
    with pytest.raises(ValueError, match="smtp"):
        secumon.check({"type": "smtp", "host": "127.0.0.1"})
    with pytest.raises(ValueError, match="http checks need `url`"):
        secumon.check({"type": "http"})


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello secumon"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_check(web):
    ok = secumon.http_check(web + "/", contains="secumon", expect_status=[200])
    assert ok.ok, ok.to_dict()
    assert ok.details["response"]["timings"]["total"] > 0
    missing = secumon.http_check(web + "/missing")
    assert missing.status == "critical"
    refused = secumon.http_check(f"http://127.0.0.1:{free_port()}/")
    assert refused.status == "unknown" and "connect" in refused.details["error"]
    with pytest.raises(ValueError, match="regex"):
        secumon.http_check(web + "/", regex="(")


def test_dns():
    result = secumon.dns("localhost", "A")
    assert result.ok, result.to_dict()
    assert result.details["answers"][0]["records"] == ["127.0.0.1"]
    with pytest.raises(ValueError, match="record type"):
        secumon.dns("localhost", "SRV")
    with pytest.raises(ValueError, match="resolver"):
        secumon.dns("localhost", "A", resolvers=["not-an-address"])


def test_tls_against_a_python_tls_server(tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "key.pem",
         "-out", tmp_path / "cert.pem", "-days", "5", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    result = secumon.tls("127.0.0.1", port, server_name="localhost")
    listener.close()
    details = result.details
    assert details["protocols"]["TLSv1.3"] is True
    titles = [f["title"] for f in details["findings"]]
    assert "self-signed certificate" in titles
    assert result.status == "critical" and details["grade"] == "F"
    with pytest.raises(ValueError, match="STARTTLS"):
        secumon.tls("127.0.0.1", port, starttls="ftp")


def test_findings_parse_paths_bytes_and_errors():
    findings = secumon.findings.parse(REPORTS / "trivy.json")
    assert [f.severity for f in findings] == ["high", "critical", "low", "high"]
    assert findings[1].to_dict()["id"] == "CVE-2024-3094:liblzma5"
    from_bytes = secumon.findings.parse((REPORTS / "nuclei.jsonl").read_bytes(), format="nuclei")
    assert len(from_bytes) == 3
    with pytest.raises(ValueError, match=r"trivy-cut\.json:\d+:\d+"):
        path = pathlib.Path(tempfile.mkdtemp()) / "trivy-cut.json"
        path.write_text((REPORTS / "trivy.json").read_text()[:500])
        secumon.findings.parse(path)


def test_errors_are_secumon_errors_with_their_details(tmp_path):
    cut = tmp_path / "trivy-cut.json"
    cut.write_text((REPORTS / "trivy.json").read_text()[:500])
    with pytest.raises(secumon.errors.ParseError) as parse:
        secumon.findings.parse(cut)
    error = parse.value
    assert isinstance(error, secumon.SecuMonError) and isinstance(error, ValueError)
    assert error.file == str(cut) and error.line >= 1 and error.column >= 1
    assert f"{error.line}:{error.column}" in str(error)
    with pytest.raises(secumon.errors.InvalidArgument):
        secumon.scan_ports("127.0.0.1", ports="90-80")
    with pytest.raises(secumon.errors.Unreachable) as down:
        secumon.Client(f"http://127.0.0.1:{free_port()}").alerts()
    assert isinstance(down.value, ConnectionError)


@pytest.fixture()
def server(tmp_path):
    binary = os.environ.get("SECUMON_BIN", str(ROOT / "target" / "debug" / "secumon"))
    if not os.path.exists(binary):
        missing = f"no secumon binary at {binary} (cargo build --bin secumon)"
        if os.environ.get("SECUMON_TEST_STRICT", "0") not in ("", "0"):
            pytest.fail(missing)
        pytest.skip(f"SKIPPED: {missing}")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {name: CriticalVuln, source: secuscan, condition: severity >= CRITICAL, severity: critical}\n"
    )
    process = subprocess.Popen(
        [binary, "server", "--data-dir", str(tmp_path), "--grpc", "127.0.0.1:0", "--api", "127.0.0.1:0",
         "--rules", str(rules)],
        stdout=subprocess.PIPE, text=True,
    )
    # On its first start the server prints the first admin's password before its addresses.
    line = ""
    while "REST API on " not in line:
        line = process.stdout.readline()
        assert line, "the server exited before saying where it listens"
    url = line.split("REST API on ")[1].split("/api/v1")[0]
    # An operator account made with the CLI, and its access token from a login.
    password = "python test password"
    subprocess.run([binary, "users", "add", "script", "--role", "operator", "--password-stdin",
                    "--data-dir", str(tmp_path)], input=password + "\n", text=True, check=True,
                   stdout=subprocess.DEVNULL)
    login = urllib.request.Request(
        f"{url}/api/v1/auth/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "script", "password": password}).encode())
    with urllib.request.urlopen(login, timeout=10) as answer:
        token = json.load(answer)["access_token"]
    yield url, token
    process.terminate()
    process.wait(timeout=10)


def test_client_imports_findings_and_sees_the_alert(server):
    url, token = server
    with pytest.raises(PermissionError, match="401") as refused:
        secumon.Client(url).alerts()
    assert isinstance(refused.value, secumon.errors.AuthError)
    assert refused.value.status == 401 and refused.value.code == "unauthenticated"
    client = secumon.Client(url, token=token)
    summary = client.import_findings(REPORTS / "trivy.json")
    assert summary["new"] == 4 and summary["format"] == "trivy"
    assert [f.id for f in client.findings(severity="critical")] == ["CVE-2024-3094:liblzma5"]
    deadline = time.time() + 10
    while not client.alerts():
        assert time.time() < deadline, "the finding rule never fired"
        time.sleep(0.05)
    alert = client.alerts()[0]
    assert alert["rule"] == "CriticalVuln" and alert["state"] == "firing"
    assert alert["labels"]["finding"] == "CVE-2024-3094:liblzma5"
    with pytest.raises(ValueError, match="400") as bad:
        client.import_findings(b"not a report")
    assert isinstance(bad.value, secumon.errors.RequestError) and bad.value.status == 400

    # Samples and events pushed from a script, then read back as a series.
    now = int(time.time() * 1000)
    pushed = client.push(
        "backup-1",
        samples=[("backup_age_seconds", 3600.0), ("backup_size_bytes", 1e9, {"job": "nightly"}),
                 {"name": "backup_age_seconds", "value": 60.0, "timestamp_ms": now - 1000}],
        events=[{"kind": "backup_done", "severity": "info", "message": "nightly backup finished"}],
        source="backup-script",
    )
    assert (pushed["samples"], pushed["events"]) == (3, 1)
    # The push says when it was sent: the server measured this (correct) clock, left it alone.
    assert abs(pushed["clock_offset_ms"]) < 1000 and pushed["clock_corrected"] is False, pushed
    series = client.query("backup-1", "backup_age_seconds", period="5m", step="1s", agg="max")
    values = [value for s in series["series"] for _, value in s["points"]]
    assert values == [60.0, 3600.0], "in time order"
    # A host name that is not a clean path segment still names one host.
    client.push("odd/host?x#y", samples=[("backup_age_seconds", 7.0)], source="odd")
    odd = client.query("odd/host?x#y", "backup_age_seconds", period="5m")
    assert [value for s in odd["series"] for _, value in s["points"]] == [7.0], odd
    with pytest.raises(ValueError, match="400"):
        client.push("backup-1", samples=[("bad metric name!", 1.0)])
    with pytest.raises(ConnectionError):
        secumon.Client(f"http://127.0.0.1:{free_port()}").alerts()


def test_async_client_calls_refusals_and_an_unreachable_server(server):
    url, token = server

    async def main():
        client = secumon.AsyncClient(url, token=token)
        # Each method gives an awaitable; two calls in flight at once on one event loop.
        summary, pushed = await asyncio.gather(
            client.import_findings(REPORTS / "trivy.json"),
            client.push("async-1", samples=[("queue_depth", 4.0, {"queue": "mail"})], source="async-script"),
        )
        assert summary["new"] == 4 and summary["format"] == "trivy", summary
        assert (pushed["samples"], pushed["events"]) == (1, 0) and pushed["clock_corrected"] is False, pushed
        critical = await client.findings(severity="critical")
        assert [(type(f), f.id) for f in critical] == [(secumon.Finding, "CVE-2024-3094:liblzma5")]
        series = await client.query("async-1", "queue_depth", period="5m", agg="max")
        assert [s["labels"]["queue"] for s in series["series"]] == ["mail"], series
        assert [value for s in series["series"] for _, value in s["points"]] == [4.0], series
        deadline = time.time() + 10
        while not (alerts := await client.alerts(status="firing")):
            assert time.time() < deadline, "the finding rule never fired"
            await asyncio.sleep(0.05)
        assert alerts[0]["rule"] == "CriticalVuln", alerts

        with pytest.raises(secumon.errors.AuthError) as refused:
            await secumon.AsyncClient(url).alerts()
        assert isinstance(refused.value, PermissionError)
        assert refused.value.status == 401 and refused.value.code == "unauthenticated"
        assert "401" in str(refused.value)
        with pytest.raises(secumon.errors.AuthError) as bad_token:
            await secumon.AsyncClient(url, token="smk_not_a_token").findings()
        assert bad_token.value.status == 401 and bad_token.value.code == "unauthenticated"
        with pytest.raises(secumon.errors.RequestError) as bad:
            await client.import_findings(b"not a report")
        assert bad.value.status == 400 and bad.value.code == "bad_request", bad.value
        with pytest.raises(secumon.errors.RequestError) as bad_metric:
            await client.push("async-1", samples=[("bad metric name!", 1.0)])
        assert bad_metric.value.status == 400 and bad_metric.value.code == "bad_request"
        # A sample the client cannot send is refused before any request.
        with pytest.raises(secumon.errors.InvalidArgument, match="sample"):
            await client.push("async-1", samples=[{"name": "queue_depth"}])
        with pytest.raises(secumon.errors.Unreachable) as down:
            await secumon.AsyncClient(f"http://127.0.0.1:{free_port()}").alerts()
        assert isinstance(down.value, ConnectionError) and "cannot reach" in str(down.value)

    asyncio.run(main())


def test_the_event_loop_runs_while_a_call_waits():
    # A server that takes its time to answer: the loop's other task keeps ticking meanwhile.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def slow_refusal():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            time.sleep(0.5)
            body = b'{"error": {"code": "busy", "message": "try later"}}'
            connection.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                               b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    threading.Thread(target=slow_refusal, daemon=True).start()

    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        with pytest.raises(secumon.errors.ServerError) as busy:
            await secumon.AsyncClient(f"http://127.0.0.1:{port}").alerts()
        ticker.cancel()
        return ticks, busy.value

    ticks, busy = asyncio.run(main())
    listener.close()
    assert (busy.status, busy.code) == (503, "busy") and isinstance(busy, RuntimeError)
    assert ticks >= 10, f"the loop ticked {ticks} times in half a second: the call blocked it"


def test_a_server_address_that_is_not_one_is_refused_at_once():
    for client in (secumon.Client, secumon.AsyncClient):
        with pytest.raises(secumon.errors.InvalidArgument, match="not a server address"):
            client("127.0.0.1:8080")
