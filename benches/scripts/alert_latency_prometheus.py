#!/usr/bin/env python3
"""Alert latency through Prometheus + Alertmanager, the peer SecuMon's alerting is measured
against.

An exporter on loopback serves N series `bench_value{series="i"}`, all 0; Prometheus scrapes
it and evaluates `bench_value > THRESHOLD` (for: 0s, alert BenchHigh); Alertmanager posts to
a webhook receiver on loopback, grouped by series (one notification per alert). Once
Prometheus has scraped every series at 0 twice, every series jumps to THRESHOLD+10 at one
instant T. For each series: latency = webhook receipt of its firing alert - the instant the
exporter first *served* the crossed value (its arrival at Prometheus). The figures from T
(end to end, including the wait for the next scrape) are reported too.

  --mode default   what the Debian packages ship: scrape and evaluation every 1m,
                   group_wait 30s, group_interval 5m, repeat_interval 4h.
  --mode tuned     scrape and evaluation every 1s, group_wait 0s, group_interval 1s;
                   everything else at its default.

Exit 0 when every series was notified, 1 when some were not (or a server failed),
2 on usage errors or when the binaries are missing (run install_prometheus.sh).
Needs /usr/bin/prometheus and /usr/bin/prometheus-alertmanager. Standard library only;
every socket is on 127.0.0.1; processes and temp dir are removed at the end.
"""

import argparse
import ctypes
import http.server
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
TIMEOUT_S = {"default": 480, "tuned": 60}


class State:
    def __init__(self, series):
        self.lock = threading.Lock()
        self.series = series
        self.value = 0.0
        self.crossed = False
        self.served_crossed_at = None  # first time a scrape response carried the crossed value
        self.zero_scrapes = 0  # Prometheus scrapes served with every series at 0
        self.received = {}  # series label -> first receipt time of its firing alert


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # Alertmanager opens one connection per group at once


def exporter(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            with state.lock:
                value = state.value
                crossed = state.crossed
            body = "".join(
                ["# HELP bench_value Alert latency benchmark value.\n# TYPE bench_value gauge\n"]
                + ['bench_value{series="%d"} %r\n' % (i, value) for i in range(state.series)]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            from_prometheus = self.headers.get("User-Agent", "").startswith("Prometheus/")
            with state.lock:
                if crossed and state.served_crossed_at is None:
                    state.served_crossed_at = time.time()  # just before writing the body
                elif not crossed and from_prometheus:
                    state.zero_scrapes += 1
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def receiver(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            at = time.time()
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                alerts = json.loads(raw).get("alerts", [])
            except ValueError:
                alerts = []
            with state.lock:
                for alert in alerts:
                    series = alert.get("labels", {}).get("series")
                    if alert.get("status") == "firing" and series is not None:
                        state.received.setdefault(series, at)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def serve(handler):
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """Child side of Popen: get SIGKILL if this script dies without cleaning up."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read() or b"null")


def ready(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def percentile(sorted_values, p):
    """Nearest rank."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True)
    words = (out.stdout or out.stderr).split()
    # "prometheus, version 2.42.0+ds (branch: ...)"
    return words[2] if len(words) > 2 and words[1] == "version" else " ".join(words[:3]) or "unknown"


class Failure(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["default", "tuned"], required=True)
    parser.add_argument("--series", type=int, default=1000, help="number of series (default 1000)")
    parser.add_argument("--threshold", type=float, default=50, help="alert threshold (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.series < 1:
        parser.error("--series must be at least 1")
    if not math.isfinite(args.threshold):
        parser.error("--threshold must be a finite number")
    missing = [b for b in (PROMETHEUS, ALERTMANAGER) if not os.access(b, os.X_OK)]
    if missing:
        print(f"alert_latency_prometheus: {', '.join(missing)} missing: "
              "run benches/scripts/install_prometheus.sh", file=sys.stderr)
        return 2

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally below always runs.
    def interrupted(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    state = State(args.series)
    servers, processes, log = [], [], None
    workdir = tempfile.mkdtemp(prefix="secumon-prom-bench-")
    try:
        exporter_server, exporter_port = serve(exporter(state))
        servers.append(exporter_server)
        receiver_server, receiver_port = serve(receiver(state))
        servers.append(receiver_server)
        prometheus_port, alertmanager_port = free_port(), free_port()
        tuned = args.mode == "tuned"

        with open(os.path.join(workdir, "rules.yml"), "w") as f:
            f.write("groups:\n"
                    "- name: bench\n"
                    "  rules:\n"
                    "  - alert: BenchHigh\n"
                    f"    expr: bench_value > {args.threshold!r}\n"
                    "    for: 0s\n")
        with open(os.path.join(workdir, "prometheus.yml"), "w") as f:
            # default mode sets no interval: Prometheus's own defaults (1m / 1m), as Debian ships.
            f.write(("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" if tuned else "")
                    + f"rule_files: ['{workdir}/rules.yml']\n"
                    "alerting:\n"
                    "  alertmanagers:\n"
                    "  - static_configs:\n"
                    f"    - targets: ['127.0.0.1:{alertmanager_port}']\n"
                    "scrape_configs:\n"
                    "- job_name: bench\n"
                    "  static_configs:\n"
                    f"  - targets: ['127.0.0.1:{exporter_port}']\n")
        with open(os.path.join(workdir, "alertmanager.yml"), "w") as f:
            # default mode: group_wait 30s, group_interval 5m, repeat_interval 4h (Alertmanager's own).
            f.write("route:\n"
                    "  receiver: hook\n"
                    "  group_by: ['series']\n"
                    + ("  group_wait: 0s\n  group_interval: 1s\n" if tuned else "")
                    + "receivers:\n"
                    "- name: hook\n"
                    "  webhook_configs:\n"
                    f"  - url: 'http://127.0.0.1:{receiver_port}/hook'\n"
                    "    send_resolved: false\n")

        log_path = os.path.join(workdir, "servers.log")
        log = open(log_path, "w")
        commands = {
            "alertmanager": [ALERTMANAGER, f"--config.file={workdir}/alertmanager.yml",
                             f"--storage.path={workdir}/alertmanager",
                             f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                             "--cluster.listen-address="],
            "prometheus": [PROMETHEUS, f"--config.file={workdir}/prometheus.yml",
                           f"--storage.tsdb.path={workdir}/prometheus",
                           f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        }
        for name, command in commands.items():
            processes.append((name, subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir,
                preexec_fn=die_with_parent)))

        def wait_for(what, predicate, timeout):
            deadline = time.time() + timeout
            while time.time() < deadline:
                for name, process in processes:
                    if process.poll() is not None:
                        raise Failure(f"{name} exited with {process.returncode}")
                try:
                    if predicate():
                        return
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.1)
            raise Failure(f"timed out after {timeout}s waiting for {what}")

        def log_tail():
            log.flush()
            with open(log_path, errors="replace") as f:
                return "".join(f.readlines()[-20:])

        prometheus_api = f"http://127.0.0.1:{prometheus_port}"
        try:
            wait_for("Alertmanager /-/ready", lambda: ready(f"http://127.0.0.1:{alertmanager_port}/-/ready"), 60)
            wait_for("Prometheus /-/ready", lambda: ready(f"{prometheus_api}/-/ready"), 60)
            wait_for("Prometheus to discover Alertmanager", lambda: get_json(
                f"{prometheus_api}/api/v1/alertmanagers")["data"]["activeAlertmanagers"], 60)
            # Two scrapes with every series at 0 (first scrape comes at a random offset
            # within the interval, so up to two intervals in default mode).
            wait_for("two scrapes at 0", lambda: state.zero_scrapes >= 2, 200 if not tuned else 30)
            wait_for("the target to be up", lambda: all(
                t["health"] == "up" for t in get_json(f"{prometheus_api}/api/v1/targets")["data"]["activeTargets"]), 30)
        except Failure as e:
            print(f"alert_latency_prometheus: {e}\n{log_tail()}", file=sys.stderr)
            return 1

        with state.lock:
            state.value = args.threshold + 10
            state.crossed = True
            crossed_at = time.time()
        deadline = crossed_at + TIMEOUT_S[args.mode]
        while time.time() < deadline:
            with state.lock:
                if len(state.received) >= args.series:
                    break
            dead = [name for name, process in processes if process.poll() is not None]
            if dead:
                print(f"alert_latency_prometheus: {', '.join(dead)} exited\n{log_tail()}", file=sys.stderr)
                break
            time.sleep(0.05)

        with state.lock:
            served = state.served_crossed_at
            arrivals = [at for series, at in state.received.items()
                        if series.isdigit() and int(series) < args.series]
        received = len(arrivals)
        latencies = sorted((at - served) * 1000 for at in arrivals) if served is not None else []
        from_crossing = sorted((at - crossed_at) * 1000 for at in arrivals)

        def stat(values, p):
            return round(percentile(values, p), 1) if values else None

        report = {
            "system": "prometheus+alertmanager",
            "mode": args.mode,
            "series": args.series,
            "received": received,
            "p50_ms": stat(latencies, 50),
            "p99_ms": stat(latencies, 99),
            "max_ms": round(latencies[-1], 1) if latencies else None,
            "from_crossing_p50_ms": stat(from_crossing, 50),
            "from_crossing_p99_ms": stat(from_crossing, 99),
            "prometheus_version": version(PROMETHEUS),
            "alertmanager_version": version(ALERTMANAGER),
        }
        if args.json:
            print(json.dumps(report))
        else:
            def ms(v):
                return "-" if v is None else f"{v:.1f} ms"
            print(f"prometheus+alertmanager, mode {args.mode}: {received}/{args.series} series notified "
                  f"(Prometheus {report['prometheus_version']}, Alertmanager {report['alertmanager_version']})")
            print(f"  from the scrape that served the crossing to the webhook: p50 {ms(report['p50_ms'])}, "
                  f"p99 {ms(report['p99_ms'])}, max {ms(report['max_ms'])}")
            print(f"  from the crossing itself:                              p50 "
                  f"{ms(report['from_crossing_p50_ms'])}, p99 {ms(report['from_crossing_p99_ms'])}")
        if received < args.series:
            print(f"alert_latency_prometheus: only {received}/{args.series} series notified within "
                  f"{TIMEOUT_S[args.mode]}s", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        print("alert_latency_prometheus: interrupted", file=sys.stderr)
        return 130
    finally:
        for _, process in processes:
            if process.poll() is None:
                process.terminate()
        for _, process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for server in servers:
            server.shutdown()
            server.server_close()
        if log is not None:
            log.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
