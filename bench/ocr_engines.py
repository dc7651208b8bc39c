"""The offline reader with two OCR engines: the same bench.offline profile run by two interpreters.

    python -m bench.ocr_engines --other /tmp/ocr4/bin/python [--own-layout-papers 12] [--papers 4]
                                [--threads 1] [--python PYTHON]

Each interpreter (`--python`, by default this one, and `--other`) runs `python -m bench.offline`
on this checkout (PYTHONPATH) as a child process, one after the other, so both read the same
generated papers: the reader's own layout (`--own-layout-papers`, seed 7000) and the held-out seed
of school papers (`--papers`, seed 90000), no tuning seed. shared.ocr picks the engine each
interpreter has installed (rapidocr 3.x, else rapidocr-onnxruntime 1.4.4); its ENGINE_NAME names
the row. An environment for 1.4.4, the engine markq used before:

    python3 -m venv /tmp/ocr4 && /tmp/ocr4/bin/pip install -r requirements.lock
    /tmp/ocr4/bin/pip uninstall -y rapidocr opencv-python-headless
    /tmp/ocr4/bin/pip install 'rapidocr-onnxruntime==1.4.4'

For each engine and reading (own layout; school papers without and with their blank template):
the confident share, the accuracy of confident verdicts and the silently wrong share, and the CPU
seconds a page bench.offline counts for that reading. For the whole child, from os.wait4 (its own
rusage, not the sum over children): CPU seconds (user + system, paper generation included) a
page, and its peak resident memory, the OCR engine's. `--threads` sets MARKQ_OCR_THREADS in both
children (1: no spinning ONNX threads on a shared machine; unset: the environment's).

Prints a markdown table, then one JSON object on the last line: each engine's figures and the
ratio of `--other`'s to `--python`'s for each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READINGS = {"own_layout": "own layout", "without_template": "school, no template", "with_template": "school, template"}
FIGURES = ("confident_share", "accuracy_on_confident", "silently_wrong_share", "cpu_seconds_per_page")


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if threads:
        env["MARKQ_OCR_THREADS"] = str(threads)
    return env


def engine_name(python: str) -> str:
    """The engine shared.ocr loads under `python`."""
    code = "from shared.ocr import ENGINE_NAME; print(ENGINE_NAME)"
    done = subprocess.run([python, "-c", code], cwd=ROOT, env=_env(None), capture_output=True, text=True, check=True)
    return done.stdout.strip()


def run(python: str, args: argparse.Namespace) -> dict[str, Any]:
    """bench.offline under `python`: its last-line JSON, with the child's CPU seconds and peak RSS."""
    command = [
        python,
        "-m",
        "bench.offline",
        f"--own-layout-papers={args.own_layout_papers}",
        f"--papers={args.papers}",
        "--tuning-papers=0",
    ]
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    child = subprocess.Popen(command, cwd=ROOT, env=_env(args.threads), stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    last = ""
    for line in child.stdout:  # the child's progress, to stderr; the JSON is its last line
        print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
        last = line if line.strip() else last
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} exited with {child.returncode}")
    result = json.loads(last)
    pages = result["own_layout"]["pages"] + result["pages"] if args.own_layout_papers else result["pages"]
    result["process"] = {
        "pages": pages,
        "cpu_seconds_per_page": round((usage.ru_utime + usage.ru_stime) / pages, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
    }
    return result


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The compared figures of one engine's run, by reading."""
    out: dict[str, Any] = {
        reading: {k: result[reading][k] for k in ("questions", *FIGURES)} for reading in READINGS if reading in result
    }
    out["process"] = result["process"]
    return out


def _ratio(new: float, old: float) -> float | None:
    return round(new / old, 3) if old else (1.0 if new == old else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the baseline interpreter (default: this one)")
    parser.add_argument("--other", required=True, help="the interpreter with the other engine")
    parser.add_argument("--own-layout-papers", type=int, default=12, help="bench.handwriting papers (0: none)")
    parser.add_argument("--papers", type=int, default=4, help="school papers from the held-out seed")
    parser.add_argument("--threads", type=int, default=1, help="MARKQ_OCR_THREADS in both children (0: inherit)")
    args = parser.parse_args()

    engines = []
    for python in (args.python, args.other):
        name = engine_name(python)
        engines.append({"engine": name, "python": python, **figures(run(python, args))})

    print(
        "\n| engine | reading | questions | confident | right when confident | silently wrong | CPU s/page | peak MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for e in engines:
        for reading, label in READINGS.items():
            if reading in e:
                f = e[reading]
                print(
                    f"| {e['engine']} | {label} | {f['questions']} | {f['confident_share']:.1%} | "
                    f"{f['accuracy_on_confident']:.1%} | {f['silently_wrong_share']:.2%} | "
                    f"{f['cpu_seconds_per_page']:.2f} | {e['process']['peak_rss_mb']:.0f} |"
                )
        p = e["process"]
        print(f"| {e['engine']} | whole process | | | | | {p['cpu_seconds_per_page']:.2f} | {p['peak_rss_mb']:.0f} |")

    base, other = engines
    ratios: dict[str, Any] = {
        reading: {k: _ratio(other[reading][k], base[reading][k]) for k in FIGURES}
        for reading in READINGS
        if reading in base
    }
    ratios["process"] = {
        k: _ratio(other["process"][k], base["process"][k]) for k in ("cpu_seconds_per_page", "peak_rss_mb")
    }
    print(json.dumps({"engines": engines, "ratio": {"of": other["engine"], "to": base["engine"], **ratios}}))


if __name__ == "__main__":
    main()
