"""Run Python code in fresh interpreters, so that a crash (abort, segfault) or a hang fails one
test case instead of the whole run.

``run_cases(setup, cases)`` runs many small cases in one interpreter (for speed) and, when one
kills it, records that case as crashed and carries on with the next in a new interpreter.
"""
import json
import subprocess
import sys
import textwrap

_RUNNER = r'''
import json, signal, sys

class _Hung(BaseException):
    pass

def _alarm(signum, frame):
    raise _Hung()

signal.signal(signal.SIGALRM, _alarm)
exec(compile(SETUP, "<setup>", "exec"), {})  # imports once; a failure here fails the whole batch
for k, code in CASES:
    print("@@start", k, flush=True)
    local = {}
    try:
        exec(compile(SETUP, "<setup>", "exec"), local)  # fresh objects for every case
        signal.alarm(CASE_TIMEOUT)
        exec(compile(code, f"<case {k}>", "exec"), local)
        signal.alarm(0)
    except _Hung:
        out = ["hung", "", f"no answer after {CASE_TIMEOUT} s"]
    except AssertionError as e:
        signal.alarm(0)
        out = ["wrong", "AssertionError", str(e)[:500]]
    except BaseException as e:
        signal.alarm(0)
        out = ["raised", type(e).__name__, str(e)[:500]]
    else:
        out = ["ok", "", ""]
    print("@@result", k, json.dumps(out), flush=True)
'''


def run_cases(setup: str, cases, timeout: float = 600, case_timeout: int = 60):
    """Outcomes of ``cases`` (code strings, each run after ``setup``): a list of (kind, error class,
    message) with kind 'ok', 'raised', 'wrong' (an assert in the case failed), 'crashed' or 'hung'
    (no answer after ``case_timeout`` s of Python, or the whole batch past ``timeout`` s).
    """
    cases = [textwrap.dedent(c) for c in cases]
    results, start = {}, 0
    while start < len(cases):
        todo = list(enumerate(cases))[start:]
        script = f"SETUP = {textwrap.dedent(setup)!r}\nCASES = {todo!r}\nCASE_TIMEOUT = {int(case_timeout)}\n" + _RUNNER
        try:
            p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
            stdout, stderr, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            stdout, stderr, rc = (e.stdout or b"").decode(), (e.stderr or b"").decode(), None
        last = None
        for line in stdout.splitlines():
            if line.startswith("@@start "):
                last = int(line.split()[1])
            elif line.startswith("@@result "):
                _, k, payload = line.split(" ", 2)
                results[int(k)] = tuple(json.loads(payload))
        if last is None or last in results:  # the setup itself failed, or everything ran
            if len(results) < len(cases) and last is None:
                raise RuntimeError(f"the set-up failed (exit code {rc}): {stderr[-2000:]}")
            break
        results[last] = ("hung", "", "") if rc is None else ("crashed", str(rc), stderr[-3000:])
        start = last + 1
    return [results[k] for k in range(len(cases))]


def run_isolated(code: str, timeout: float = 120):
    """(returncode, stdout, stderr) of ``python -c code``; returncode None after ``timeout`` s."""
    try:
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""
    return p.returncode, p.stdout, p.stderr
