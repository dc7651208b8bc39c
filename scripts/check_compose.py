"""Static checks of docker-compose.yml, since no Docker engine runs where the tests run.

1. The file validates against the Compose specification's JSON schema (vendored by check-jsonschema).
2. Cross-references hold: depends_on targets exist; `service_healthy` targets have a healthcheck;
   `service_completed_successfully` targets are one-shot; every required ${VAR:?} is in
   .env.example; every MARKQ_* variable is a real setting; the Dockerfile copies every package.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    problems: list[str] = []
    compose_file = ROOT / "docker-compose.yml"
    schema = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(compose_file),
        ],
        capture_output=True,
        text=True,
    )
    if schema.returncode != 0:
        problems.append("compose schema: " + (schema.stdout + schema.stderr).strip())

    text = compose_file.read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        depends = service.get("depends_on", {})
        for target, rule in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            if target not in services:
                problems.append(f"{name}: depends on unknown service {target}")
                continue
            condition = rule.get("condition")
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and services[target].get("restart", "no") != "no":
                problems.append(f"{name}: waits for {target} to complete, but {target} restarts")
    for volume in {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}:
        if not volume.startswith((".", "/")) and volume not in (compose.get("volumes") or {}):
            problems.append(f"named volume {volume} is not declared")

    example = (ROOT / ".env.example").read_text()
    for variable in sorted(set(re.findall(r"\$\{(\w+):\?", text))):
        if not re.search(rf"^#?\s*{variable}=", example, re.M):
            problems.append(f"required variable {variable} is missing from .env.example")
    fields = {f"MARKQ_{name.upper()}" for name in Settings.model_fields}
    for variable in sorted(set(re.findall(r"\b(MARKQ_[A-Z0-9_]+)", text + example))):
        if variable not in fields:
            problems.append(f"{variable} is not a markq setting")

    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("api", "worker", "shared", "client", "bench"):
        if not re.search(rf"^COPY {package} \./{package}$", dockerfile, re.M):
            problems.append(f"Dockerfile does not copy the {package} package")

    for problem in problems:
        print(f"compose check: {problem}")
    print(f"compose check: {len(services)} services, {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
