"""The documentation keeps up with the code: every config key is in config/example.toml, every command and
benchmark is in the README. (Each failure names what is missing.)"""

import argparse
import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from monitor.cli import build_parser
from monitor.config import MonitorConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / "config" / "example.toml").read_text()


def models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (directly, in a list, a dict's values or a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (list, dict, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def config_keys(model: type[BaseModel], path: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        keys.append(key)
        for sub in models_in(field.annotation):
            keys += config_keys(sub, key)
    return keys


def test_every_config_key_is_in_the_example_config():
    written = set(re.findall(r"^[#\s]*([A-Za-z_]+)\s*=", EXAMPLE, re.M))
    written |= set(re.findall(r"[{,]\s*([A-Za-z_]+)\s*=", EXAMPLE))  # inline tables
    written |= set(re.findall(r"^[#\s]*\[+([A-Za-z_.<>]+)\]+", EXAMPLE, re.M))  # [section], [[streams]]
    sections = {part for name in written for part in name.split(".")}
    missing = [k for k in config_keys(MonitorConfig) if k.split(".")[-1] not in written | sections]
    assert not missing, f"config keys not in config/example.toml: {missing}"


def commands(parser: argparse.ArgumentParser, prefix: str = "monitor") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found += commands(sub, f"{prefix} {name}")
    return found


def test_every_command_is_in_the_readme():
    listed = commands(build_parser())
    assert len(listed) > 10  # the walk found the subcommands
    missing = [c for c in listed if c.split(" ", 1)[1] not in README]
    assert not missing, f"commands not in the README: {missing}"


def test_every_benchmark_and_its_result_keys_are_in_the_readme():
    for bench in sorted((ROOT / "bench").glob("[!_]*.py")):
        name = f"bench/{bench.name}"
        assert name in README, f"{name} is not in the README"
        text = bench.read_text()
        assert "--quick" in text and "RESULT " in text, f"{name}: no --quick or no RESULT line"


def test_the_readme_names_every_column_of_the_score_records():
    from monitor.recording import COLUMNS

    section = README[README.index("**The record** (a contract"):]
    section = section[:section.index("`calibrate` needs")]
    missing = [c for c in COLUMNS if f"`{c}`" not in section]
    assert not missing, missing
