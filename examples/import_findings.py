#!/usr/bin/env python3
"""Import a scanner report into a SecuMon server and print the alerts it raised.

    secumon server --rules examples/alerting.yaml &      # any rules file with a finding rule
    export SECUMON_TOKEN=...                             # an operator's API key or access token
    python3 examples/import_findings.py secumon-findings/tests/reports/trivy.json

Needs the `secumon` Python module (bindings/python: `maturin develop` in a virtualenv).
"""

import os
import sys
import time

import secumon


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    report, url = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080")
    try:
        findings = secumon.findings.parse(report)
    except ValueError as error:
        print(f"cannot read the report: {error}", file=sys.stderr)
        return 2
    print(f"{report}: {len(findings)} findings, {sum(f.severity == 'critical' for f in findings)} critical")
    client = secumon.Client(url, token=os.environ.get("SECUMON_TOKEN"))
    summary = client.import_findings(report)
    print(f"imported: {summary['new']} new, {summary['reopened']} reopened, {summary['fixed']} fixed")
    time.sleep(0.5)  # alerts are evaluated as the import commits; give the engine a moment
    for alert in client.alerts():
        labels = alert["labels"]
        print(f"ALERT {alert['rule']} ({alert['severity']}, {alert['state']}): "
              f"{labels.get('finding', '')} on {labels.get('asset', labels.get('host', ''))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
