"""The seed's README example runs unchanged (DEST and PK aside) against
each server."""

import os
import pathlib
import subprocess
import sys


def test_readme_example(server):
    env = dict(os.environ, NAMEBUMP_DEST_HOST=server.host, NAMEBUMP_DEST_PORT=str(server.port),
               NAMEBUMP_PK=server.pk.hex())
    example = pathlib.Path(__file__).with_name("readme_example.py")
    out = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b'hello world'"


def test_keyway_readme_python_section(keyway_server, tmp_path):
    """The Python section of Keyway's README, with DEST pointed at a local
    server."""
    readme = (pathlib.Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("\n## Python\n"):]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("```", start)]
    assert 'DEST = ("127.0.0.1", 5300)' in code
    code = code.replace('DEST = ("127.0.0.1", 5300)', "DEST = {0!r}".format(keyway_server.dest))
    script = tmp_path / "readme_python.py"
    script.write_text(code)
    env = dict(os.environ, NAMEBUMP_PK=keyway_server.pk.hex())
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b'hello'"


def test_short_programs_exit_cleanly(keyway_server):
    """A program whose last await returns while a native thread is still
    finishing its call into Python used to die at exit (SIGSEGV, about one
    run in six before bridge.rs counted those calls). Twenty runs."""
    example = pathlib.Path(__file__).with_name("readme_example.py")
    env = dict(os.environ, NAMEBUMP_DEST_HOST=keyway_server.host, NAMEBUMP_DEST_PORT=str(keyway_server.port),
               NAMEBUMP_PK=keyway_server.pk.hex())
    codes = [
        subprocess.run([sys.executable, str(example)], env=env, capture_output=True, timeout=60).returncode
        for _ in range(20)
    ]
    assert codes == [0] * 20


def test_exit_waits_for_a_slow_callback_of_a_native_thread(tmp_path):
    """The exit guard waits until native threads have left Python, on a
    condition rather than a fixed two seconds: a clock callback that takes
    three seconds returns, and the program exits cleanly."""
    script = pathlib.Path(__file__).with_name("slow_clock_at_exit.py")
    marker = tmp_path / "left"
    out = subprocess.run([sys.executable, str(script), str(marker)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert marker.read_text() == "left"
