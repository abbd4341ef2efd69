"""The README's library tour runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README must show the library API in a python block"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    assert "(5, 2, 32, 32, 3) (2,)" in capsys.readouterr().out
