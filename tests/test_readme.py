"""The README's library tour runs as written; the paths and commands it names exist."""

import pathlib
import re
import shlex

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_blocks_run(capsys):
    python = blocks("python")
    assert python, "the README must show the library API in a python block"
    for block in python:
        exec(compile(block, str(README), "exec"), {})
    assert "(5, 2, 32, 32, 3) (2,)" in capsys.readouterr().out
    tour = "\n".join(python)
    # control values in their explicit form (DESIGN.md principle 6): per-sample and per-pixel are said
    assert "Control.per_sample(" in tour and "Control.per_pixel(" in tour


def test_readme_commands_parse():
    """Every ``ctl-jax`` command of the README's bash blocks is accepted by the command-line parser."""
    from ctl_jax.cli import build_parser

    parser = build_parser()
    commands = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("ctl-jax "):
                commands.append(shlex.split(line, comments=True)[1:])  # a trailing "# ..." is bash's comment
    assert {c[0] for c in commands} >= {"run", "apply", "prepare-ops", "train-ops"}
    for argv in commands:
        parser.parse_args(argv)  # SystemExit (exit code 2) on an unknown option


def test_readme_paths_exist():
    text = README.read_text()
    paths = set(re.findall(r"(?<![\w./-])((?:ctl_jax|experiments|benchmarks|notebooks|tests)/[\w./-]*\w)", text))
    assert "benchmarks/dncnn_bsd68.py" in paths and "notebooks/operators.ipynb" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"
