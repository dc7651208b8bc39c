"""Static checks of docker-compose.yml, since no Docker engine runs where the tests run.

1. The file validates against the Compose specification's JSON schema (vendored by check-jsonschema).
2. Cross-references hold: depends_on targets exist; `service_healthy` targets have a healthcheck;
   `service_completed_successfully` targets are one-shot; every required ${VAR:?} is in
   .env.example; every MARKQ_* variable is a real setting; the Dockerfile copies every package.
3. Operations: only the proxy publishes a port of markq's own (API and Flower sit behind it);
   each worker's stop grace period outlasts the longest provider call; files mounted exist; the
   proxy's nginx config passes `nginx -t` where nginx is installed (the tests install it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
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

    problems += operations(services)

    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("api", "worker", "shared", "client", "bench"):
        if not re.search(rf"^COPY {package} \./{package}$", dockerfile, re.M):
            problems.append(f"Dockerfile does not copy the {package} package")

    for problem in problems:
        print(f"compose check: {problem}")
    print(f"compose check: {len(services)} services, {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


def seconds(duration: str) -> float:
    """A compose duration ("150s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def operations(services: dict[str, dict]) -> list[str]:
    problems = []
    own = {name for name, s in services.items() if s.get("image") == "markq:latest" or "build" in s}
    for name in sorted(own):
        if services[name].get("ports"):
            problems.append(f"{name} publishes a port: only the proxy should (it buffers slow clients)")
    longest_call = Settings.model_fields["provider_timeout_seconds"].default
    for name in ("worker", "worker-images", "worker-ocr"):
        grace = seconds(str(services.get(name, {}).get("stop_grace_period", "10s")))
        if name == "worker" and grace <= longest_call:
            problems.append(
                f"{name}: stop_grace_period {grace:g} s does not outlast a provider call ({longest_call} s)"
            )
    proxy = services.get("proxy", {})
    mounted = [v.split(":")[0] for v in proxy.get("volumes", [])]
    if "./deploy/proxy.conf" not in mounted:
        problems.append("proxy: deploy/proxy.conf is not mounted")
    for path in mounted:
        if path.startswith(".") and not (ROOT / path).exists():
            problems.append(f"proxy: mounts {path}, which does not exist")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx:
        problems += nginx_test(nginx)
    return problems


def nginx_test(nginx: str) -> list[str]:
    """`nginx -t` on the proxy's config, its upstreams pointed at loopback (compose's service
    names do not resolve here)."""
    with tempfile.TemporaryDirectory() as folder:
        conf = (ROOT / "deploy" / "proxy.conf").read_text()
        conf = conf.replace("server api:8000", "server 127.0.0.1:8000").replace(
            "server flower:5555", "server 127.0.0.1:5555"
        )
        (Path(folder) / "proxy.conf").write_text(conf.replace("listen 80 ", "listen 127.0.0.1:18080 "))
        (Path(folder) / "nginx.conf").write_text(
            f"pid {folder}/nginx.pid; error_log stderr; events {{}} "
            f"http {{ access_log off; include {folder}/proxy.conf; }}"
        )
        tested = subprocess.run(
            [nginx, "-t", "-q", "-p", folder, "-c", f"{folder}/nginx.conf"], capture_output=True, text=True
        )
    return [] if tested.returncode == 0 else ["nginx -t: " + tested.stderr.strip()]


if __name__ == "__main__":
    sys.exit(main())
