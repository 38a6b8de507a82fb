"""HTTP probing cost: fencekit against Debian's blackbox_exporter.

Run: ``.venv/bin/python -m bench.bench_probes [--targets 100]
[--probes 1000]``.

100 HTTP targets listen on loopback (one helper process, one thread per
port). Measured, from /proc, as CPU seconds (user + system) of the
prober process only:

- blackbox_exporter answering ``/probe?module=http_2xx&target=...``,
  driven with 8 requests in flight, as Prometheus would scrape it;
- the fencekit agent answering the same ``/probe`` requests (a new
  probe, hence a new connection, per request, like blackbox);
- the fencekit agent running 100 configured HTTP checks on its own
  schedule (its normal work: each check keeps its connection alive);
- the agent's resident memory (VmRSS) with 100 checks configured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def distinct_ports(count: int) -> list[int]:
    """``count`` different free ports (all held until all are found)."""
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        held.append(sock)
    ports = [sock.getsockname()[1] for sock in held]
    for sock in held:
        sock.close()
    return ports


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_http(url: str, timeout: float = 30) -> None:
    """Wait until ``url`` answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b"fencekit-ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_targets(ports: list[int]) -> None:
    """Serve every port from this process (the targets' helper)."""
    for port in ports:
        server = http.server.ThreadingHTTPServer((LOOPBACK, port), _Quiet)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def drive(base: str, module: str, targets: list[str], total: int) -> int:
    """Send ``total`` /probe requests, 8 at a time; count successes."""

    def one(i: int) -> bool:
        target = targets[i % len(targets)]
        url = f"{base}/probe?module={module}&target={target}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return b"probe_success 1" in answer.read()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return sum(pool.map(one, range(total)))


def blackbox(folder: Path, targets: list[str], total: int) -> float:
    """CPU seconds of blackbox_exporter for ``total`` probes."""
    config = folder / "blackbox.yml"
    config.write_text(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n"
        "    http:\n      preferred_ip_protocol: ip4\n"
        "      ip_protocol_fallback: false\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus-blackbox-exporter",
            f"--config.file={config}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://{LOOPBACK}:{port}"
        wait_http(base + "/-/healthy")
        drive(base, "http_2xx", targets, 100)
        before = cpu_seconds(process.pid)
        ok = drive(base, "http_2xx", targets, total)
        used = cpu_seconds(process.pid) - before
    finally:
        process.terminate()
        process.wait(10)
    assert ok == total, f"blackbox: {ok}/{total} probes succeeded"
    return used


def agent_config(
    folder: Path, port: int, targets: list[str], interval: float
) -> Path:
    """An agent configuration with one HTTP check per target."""
    lines = [
        f'[agent]\nlisten = "{LOOPBACK}:{port}"\n',
        f"[defaults]\ninterval = {interval}\ntimeout = 5\njitter = 0.2\n",
        "[modules.http_2xx]\nkind = 'http'\ntimeout = 5\n",
    ]
    for i, target in enumerate(targets):
        lines.append(f"[checks.t{i}]\nkind = 'http'\nurl = '{target}'\n")
    path = folder / "agent.toml"
    path.write_text("\n".join(lines))
    return path


def start_agent(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``fencekit agent`` in a child process, serving."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fencekit.cli",
            "agent",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://{LOOPBACK}:{port}/-/healthy")
    return process


def runs(port: int) -> int:
    """Probes the agent has run so far, from its /metrics."""
    url = f"http://{LOOPBACK}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("fencekit_check_runs_total{")
        )
    )


def fencekit_probe_endpoint(
    folder: Path, targets: list[str], total: int
) -> float:
    """CPU seconds of the agent answering ``total`` /probe requests."""
    port = free_port()
    config = agent_config(folder, port, [], 10)
    process = start_agent(config, port)
    try:
        base = f"http://{LOOPBACK}:{port}"
        drive(base, "http_2xx", targets, 100)
        before = cpu_seconds(process.pid)
        ok = drive(base, "http_2xx", targets, total)
        used = cpu_seconds(process.pid) - before
    finally:
        process.terminate()
        process.wait(10)
    assert ok == total, f"fencekit /probe: {ok}/{total} succeeded"
    return used


def fencekit_checks(
    folder: Path, targets: list[str], total: int
) -> tuple[float, int, float]:
    """CPU seconds per probe of the agent's own checks, probes, RSS."""
    port = free_port()
    config = agent_config(folder, port, targets, 1.0)
    process = start_agent(config, port)
    try:
        time.sleep(3)
        start_runs, before = runs(port), cpu_seconds(process.pid)
        # Scrape rarely: a scrape costs the agent CPU time too.
        time.sleep(total / len(targets) * 0.9)
        while runs(port) - start_runs < total:
            time.sleep(0.5)
        done = runs(port) - start_runs
        used = cpu_seconds(process.pid) - before
        memory = rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    return used, done, memory


def main() -> None:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--probes", type=int, default=1000)
    args = parser.parse_args()

    ports = distinct_ports(args.targets)
    helper = subprocess.Popen(
        [sys.executable, __file__, "serve", *map(str, ports)]
    )
    targets = [f"http://{LOOPBACK}:{p}/health" for p in ports]
    try:
        for target in targets:
            wait_http(target)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            bb = blackbox(folder, targets, args.probes)
            fk_probe = fencekit_probe_endpoint(folder, targets, args.probes)
            used, done, memory = fencekit_checks(folder, targets, args.probes)
    finally:
        helper.terminate()
        helper.wait(10)

    per_k = 1000 / args.probes
    checks_per_k = used * 1000 / done
    print(
        f"targets {args.targets}, probes {args.probes}, cores {os.cpu_count()}"
    )
    print("| prober | CPU s per 1,000 probes | vs blackbox |")
    print("|---|---|---|")
    print(f"| blackbox_exporter /probe | {bb * per_k:.2f} | 1.00x |")
    print(
        f"| fencekit agent /probe | {fk_probe * per_k:.2f} |"
        f" {fk_probe / bb:.2f}x |"
    )
    print(
        f"| fencekit agent, 100 checks (keep-alive) | {checks_per_k:.2f} |"
        f" {checks_per_k / (bb * per_k):.2f}x |"
    )
    print(f"agent RSS with {args.targets} checks: {memory:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_targets([int(p) for p in sys.argv[2:]])
    else:
        main()
