"""Experiment configs: Python files whose ``get_config(preset)`` returns a dict (``experiments/``),
and ``--set key.sub=value`` overrides checked before anything runs or any folder is made."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import pathlib
import types
import typing


def load_config(spec: str, overrides=()) -> dict:
    """``path.py[:preset]`` -> the dict its ``get_config(preset)`` returns, with ``key.sub=value`` overrides
    (checked by ``merge_overrides`` before anything runs or any folder is made)."""
    path, _, preset = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no config file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"ctl_jax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(preset) if preset else module.get_config()
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value; got {item!r}")
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value  # a bare string such as a folder path
    return merge_overrides(config, parsed)  # ValueError for unknown keys and values of the wrong type


# Config sections holding one stage's TrainConfig fields (experiments/*.py): their keys are the
# TrainConfig fields (every one may be set, listed in the config or not) and are type-checked.
TRAIN_SECTIONS = ("stage1", "stage2", "train")


def merge_overrides(config: dict, overrides: dict) -> dict:
    """A deep copy of config with dotted keys set: {"stage1.steps": 10} sets config["stage1"]["steps"].

    Checked before anything runs (ValueError naming the override): the key exists (in a training
    section, any TrainConfig field); a section is replaced only by a dict; a TrainConfig field
    gets a value of its declared type (``steps`` an int, ``lr_milestones`` a list of ints, ...) and
    the section then makes a valid TrainConfig; elsewhere a value keeps its kind (a number stays
    a number, a list is not replaced by a string, a flag stays True/False).
    """
    config = copy.deepcopy(config)
    touched = set()
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise ValueError(f"override {dotted!r}: {key!r} is not a section of the config")
            node = node[key]
        section = parents[0] if len(parents) == 1 and parents[0] in TRAIN_SECTIONS else None
        fields = _train_fields() if section else {}
        if leaf not in node and leaf not in fields:
            raise ValueError(f"override {dotted!r}: unknown key {leaf!r}; known: {sorted(set(node) | set(fields))}")
        if leaf in fields:
            _check_type(dotted, value, fields[leaf])
            touched.add(section)
        else:
            _check_kind(dotted, node[leaf], value)
            if not parents and leaf in TRAIN_SECTIONS:  # a whole training section replaced
                touched.add(leaf)
        node[leaf] = value
    for section in sorted(touched):
        _check_train_section(section, config[section])
    return config


def _train_fields() -> dict:
    """{field name: type} of TrainConfig."""
    from ctl_jax.train.loop import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _matches(value, hint) -> bool:
    """Whether ``value`` (parsed from --set) has the type ``hint`` (int, float, bool, str, None,
    list[...], unions, Any); an int is a float, a bool is not a number."""

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    """'an integer', 'a list of integers', 'an integer or a string', ... for a type hint."""

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and origin in (list, tuple):
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(args[0], "values")
    if args:
        return " or ".join(_describe(a) for a in args)
    names = {int: "an integer", float: "a number", bool: "True or False", str: "a string", type(None): "None",
             list: "a list", tuple: "a list"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _check_type(dotted: str, value, hint) -> None:
    if not _matches(value, hint):
        raise ValueError(f"override {dotted!r}: expects {_describe(hint)}; got {value!r}")


def _check_kind(dotted: str, old, new) -> None:
    """Refuse a value of another kind than the config's: a section replaced by a non-dict, a
    number or list replaced by a string, a flag by a non-flag, an int by a fractional number."""
    def refuse(expected):
        return ValueError(f"override {dotted!r}: expects {expected} (the config has {old!r}); got {new!r}")

    if isinstance(old, dict) and not isinstance(new, dict):
        raise ValueError(f"override {dotted!r}: {dotted} is a section of the config; set its keys, e.g. "
                         f"--set {dotted}.{next(iter(old), 'key')}=...; got {new!r}")
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise refuse("True or False")
    elif isinstance(old, (int, float)) and isinstance(new, str):
        raise refuse("a number")
    elif isinstance(old, int) and isinstance(new, float) and not new.is_integer():
        raise refuse("a whole number")
    elif isinstance(old, (list, tuple)) and isinstance(new, str):
        raise refuse("a list, e.g. ['a', 'b']")


def _check_train_section(section: str, values: dict) -> None:
    """The section must make a TrainConfig (its own range checks: steps >= 1, lr > 0, ...)."""
    from ctl_jax.train.loop import TrainConfig

    try:
        TrainConfig(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"override of {section}: {err}") from None
