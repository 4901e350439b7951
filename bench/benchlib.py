"""Helpers shared by the Python benchmark drivers (bench/ingest, bench/e2e, bench/hl7)."""
import socket
import subprocess
import time


def free_port():
    """A loopback port nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=120):
    """True once something accepts connections on 127.0.0.1:port, False after timeout s."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_process(proc, grace_s=60):
    """SIGTERM (a receiver's graceful shutdown), then SIGKILL if it is not gone in grace_s."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
