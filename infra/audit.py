"""`make audit`: the runtime pins checked against known vulnerabilities with pip-audit.

Each pin of the lock file (exact versions, no resolution) is looked up in the vulnerability
service (default: PyPI's advisory data; `AUDIT_SERVICE=osv` for OSV). Exit status: 1 when a
pinned version has a known vulnerability; 0 when none has; and when the service cannot be
reached for some or all pins, a NOT AUDITED notice naming them, with status 0 (a host
without that access can still lint) or 3 with `AUDIT_STRICT=1` (CI that must audit).

Usage: python infra/audit.py [LOCK_FILE]   (default: requirements.lock)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NOT_AUDITED = 3


def main(argv: list[str]) -> int:
    lock = Path(argv[1] if len(argv) > 1 else "requirements.lock")
    service = os.environ.get("AUDIT_SERVICE", "pypi")
    strict = os.environ.get("AUDIT_STRICT") == "1"
    pins = [
        line
        for line in lock.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pip_audit"),
                *("--requirement", str(lock), "--no-deps", "--disable-pip"),
                *("--vulnerability-service", service, "--progress-spinner", "off"),
                *("--format", "json", "--output", str(report), "--timeout", "15"),
            ],
            capture_output=True,
            text=True,
        )
        data = json.loads(report.read_text()) if report.exists() else None
    if data is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _not_audited(f"pip-audit could not query {service} ({last[:300]})", strict)

    vulnerable = [d for d in data["dependencies"] if d.get("vulns")]
    skipped = [d for d in data["dependencies"] if d.get("skip_reason")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    audited = len(pins) - len(skipped)
    print(
        f"audit of {lock} against {service}: {audited} of {len(pins)} pins checked, "
        f"{len(vulnerable)} with known vulnerabilities"
    )
    if vulnerable:
        return 1
    if skipped:
        names = ", ".join(d["name"] for d in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        reason = skipped[0]["skip_reason"]
        return _not_audited(
            f"{len(skipped)} pins could not be looked up ({names}{more}); first reason: "
            f"{reason}. The vulnerability service is probably unreachable from here",
            strict,
        )
    return 0


def _not_audited(why: str, strict: bool) -> int:
    print(f"NOT AUDITED: {why}.", file=sys.stderr)
    print(
        "  Run `make audit` on a host that reaches the service (AUDIT_SERVICE=osv for OSV); "
        "AUDIT_STRICT=1 makes this an error.",
        file=sys.stderr,
    )
    return NOT_AUDITED if strict else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
