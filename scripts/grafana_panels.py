#!/usr/bin/env python3
"""Runs every query of SecuMon's Grafana dashboards against a running server, as Grafana's
Prometheus data source would, and fails unless each returns data.

Usage: grafana_panels.py API_URL TOKEN DASHBOARD.json...

Grafana's variables are filled in as Grafana does: `$host` with the values its own
`label_values(...)` query returns (a regex of them all, as "All" selects), `$__rate_interval`,
`$__interval` and `$__range` with fixed durations. A panel may come back empty only where
its description says what it needs that this machine may lack (no Docker engine, systemd not
the init system); those are listed as such. Every panel must use the provisioned data source
(uid `secumon`), and instant and range targets are asked as such.
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request

DATASOURCE_UID = "secumon"
# Panels whose data depends on what the machine runs; empty is allowed, and reported.
MAY_BE_EMPTY = {
    "Container CPU": "no Docker engine on this machine",
    "Failed systemd units": "systemd is not the init system here",
}
FIXED = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def call(api, token, path, params, post=True):
    """POST, form-encoded, as the provisioned data source (httpMethod POST) sends queries;
    GET where Prometheus' API has no POST (label values)."""
    url = f"{api}/prometheus/api/v1/{path}"
    encoded = urllib.parse.urlencode(params, doseq=True)
    request = urllib.request.Request(
        url if post else f"{url}?{encoded}",
        data=encoded.encode() if post else None,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "errorType": f"HTTP {error.code}", "error": body}


def variable_values(api, token, variable):
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    if not found:
        raise SystemExit(f"variable {variable['name']}: unsupported query {query!r}")
    selector, label = found.groups()
    answer = call(api, token, f"label/{label}/values", {"match[]": selector}, post=False)
    if answer.get("status") != "success" or not answer["data"]:
        raise SystemExit(f"variable {variable['name']}: {query} gave no values: {answer}")
    return answer["data"]


def main():
    api, token, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    failures, ran, empty_allowed = [], 0, []
    now = time.time()
    for path in files:
        with open(path) as f:
            board = json.load(f)
        values = {}
        for variable in board.get("templating", {}).get("list", []):
            found = variable_values(api, token, variable)
            values[f"${variable['name']}"] = "|".join(re.escape(v) for v in found)
        ids = [p["id"] for p in board["panels"]]
        if len(ids) != len(set(ids)):
            failures.append(f"{path}: panel ids repeat")
        for panel in board["panels"]:
            where = f"{board['title']} / {panel['title']}"
            if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
                failures.append(f"{where}: data source is not uid {DATASOURCE_UID}")
            for target in panel["targets"]:
                expr = target["expr"]
                for name, value in {**FIXED, **values}.items():
                    expr = expr.replace(name, value)
                if "$" in expr:
                    failures.append(f"{where}: unfilled variable in {expr}")
                    continue
                if target.get("instant"):
                    answer = call(api, token, "query", {"query": expr, "time": now})
                else:
                    answer = call(api, token, "query_range", {"query": expr, "start": now - 600, "end": now, "step": 15})
                ran += 1
                if answer.get("status") != "success":
                    failures.append(f"{where}: {expr}: {answer.get('errorType')}: {answer.get('error')}")
                elif not answer["data"]["result"]:
                    if panel["title"] in MAY_BE_EMPTY:
                        empty_allowed.append(f"{where} ({MAY_BE_EMPTY[panel['title']]})")
                    else:
                        failures.append(f"{where}: {expr}: no data")
    for line in empty_allowed:
        print(f"grafana_panels: no data on this machine: {line}")
    for line in failures:
        print(f"grafana_panels: FAILED {line}", file=sys.stderr)
    print(f"grafana_panels: {ran} queries of {len(files)} dashboards, {len(failures)} failed, {len(empty_allowed)} empty as allowed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
