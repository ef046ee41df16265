"""Helpers for tests/readme: a test bed of its own (moto + the Slack sink, tests/testbed/start.sh),
the environment of a user's terminal, commands run through bash, and `cargo lambda watch`."""
import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "tests" / "testbed"
# What the test bed (run.sh, start.sh) and an outer make (make test) export: a user's terminal
# has none of it.
TESTBED_VARIABLES = re.compile(r"^(AWS_\w+|TESTBED_DIR|SLACK_SINK_URL|MAKELEVEL|MAKEFLAGS|MFLAGS|MAKEOVERRIDES)$")


def user_env(**extra):
    """The environment of a user's shell in the repository: no test bed, no AWS endpoint."""
    env = {k: v for k, v in os.environ.items() if not TESTBED_VARIABLES.match(k)}
    env.update(extra)
    return env


@contextlib.contextmanager
def own_testbed(directory):
    """Starts a test bed of its own in `directory`, yields its environment, stops it."""
    env = user_env(TESTBED_DIR=str(directory))
    try:
        subprocess.run([str(TESTBED / "start.sh")], env=env, check=True, timeout=120)
        for line in (Path(directory) / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        env["PATH"] = f"{ROOT / '.venv/bin'}:{env['PATH']}"
        yield env
    finally:
        subprocess.run([str(TESTBED / "stop.sh")], env=env, timeout=60)


def sh(command, env, timeout=600, check=None):
    """Runs one command exactly as written, with bash, in the repository root."""
    out = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    if check is not None:
        assert (out.returncode == 0) == check, (
            f"`{command}` exited {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}")
    return out


def listening(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Background:
    """A command in its own process group (like a second terminal), stopped like Ctrl-C."""

    def __init__(self, command, env, log):
        self.command, self.log = command, Path(log)
        self.process = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, start_new_session=True,
                                        stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_for_port(self, port, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"`{self.command}` exited {self.process.returncode}:\n{self.output()[-6000:]}")
            if listening(port):
                return
            time.sleep(0.2)
        raise AssertionError(f"`{self.command}` did not listen on {port} within {timeout} s:\n{self.output()[-6000:]}")

    def output(self):
        return self.log.read_text()

    def stop(self):
        """SIGINT to the whole group, as Ctrl-C does; returns once everything in it has exited."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the group's other members (moto, the sink, the function)
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        raise AssertionError(f"`{self.command}` left processes behind after Ctrl-C")


@contextlib.contextmanager
def exclusive_port(port):
    """`make watch` listens on the documented port: one test run at a time on this machine."""
    with open(f"/tmp/crossplane-lambda-port-{port}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert not listening(port), f"port {port} is in use (a `make watch` of yours?): stop it and rerun"
        yield
