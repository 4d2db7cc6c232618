"""The configuration reference, generated from the config model itself so it cannot drift.

`bastion config defaults` prints every setting with its default as commented YAML;
`bastion config defaults --markdown` prints the reference tables of docs/configuration.md.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel

from bastion.config import BastionConfig


@dataclass(slots=True)
class Setting:
    path: str  # dotted key, as written in YAML
    default: Any
    type: str
    description: str
    section: bool = False  # a nested section (its settings follow)
    depth: int = 0
    example: bool = False  # inside a list item, map entry or optional section: not set by default


_YAML11_BOOLS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false"})


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model class inside an annotation, and how it is held: '', 'list', 'dict' or 'optional'."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation, ""
    if origin is list and args and inspect.isclass(args[0]) and issubclass(args[0], BaseModel):
        return args[0], "list"
    if origin is dict and len(args) == 2 and inspect.isclass(args[1]) and issubclass(args[1], BaseModel):
        return args[1], "dict"
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if inspect.isclass(a) and issubclass(a, BaseModel):
                return a, "optional"
    return None, ""


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) if inspect.isclass(annotation) else None
    text = text or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")


def _doc(cls: type[BaseModel]) -> str:
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(cls.__name__ + "(") or doc == inspect.getdoc(BaseModel):
        return ""
    return doc.split("\n\n", 1)[0].replace("\n", " ")


def settings(model: type[BaseModel] = BastionConfig, instance: BaseModel | None = None, prefix: str = "",
             depth: int = 0, example: bool = False) -> Iterator[Setting]:
    """Every setting of `model` in declaration order, sections followed by their settings."""
    if instance is None:
        instance = model()
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        value = getattr(instance, name, None)
        sub, how = _model_in(field.annotation)
        desc = field.description or ""
        if sub is not None:
            shape = {"": "", "list": " (a list of these)", "dict": " (a map of name to these)",
                     "optional": " (optional section)"}[how]
            yield Setting(path, value if how in ("list", "dict") else None, sub.__name__,
                          ((desc or _doc(sub)) + shape).strip(), section=True, depth=depth,
                          example=example or how == "optional")
            child = value if how == "" and isinstance(value, BaseModel) else _instance(sub)
            if child is not None:
                mark = "[]." if how == "list" else (".NAME." if how == "dict" else ".")
                yield from settings(sub, child, path + mark, depth + 1, example=example or how != "")
            continue
        yield Setting(path, _plain(value), _type_name(field.annotation), desc, depth=depth, example=example)


def _instance(cls: type[BaseModel]) -> BaseModel | None:
    try:
        return cls()
    except Exception:  # a section with required fields: document its fields without defaults
        return cls.model_construct()


def _plain(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    text: str = yaml.safe_dump(_jsonable(value), default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def defaults_yaml() -> str:
    """Every setting with its default, as a YAML file a user can start from."""
    out = ["# Bastion configuration: every setting with its default.", ""]
    for s in settings():
        pad = "  " * s.depth
        key = s.path.rsplit(".", 1)[-1]
        if key.lower() in _YAML11_BOOLS:
            key = f'"{key}"'  # YAML 1.1 reads a bare `on:` or `no:` key as a boolean
        comment = f"  # {s.description}" if s.description else ""
        if s.example:
            # Fields of a list item, a map entry or an optional section: shown, commented out.
            out.append(f"{pad}# {key}:" + ("" if s.section else f" {_yaml_value(s.default)}") + comment)
        elif s.section and s.default is None:
            out.append(f"{pad}{key}:{comment}")
        else:
            out.append(f"{pad}{key}: {_yaml_value(s.default)}{comment}")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """One table per top-level section: key, type, default, description."""
    top: list[str] = ["| key | default | description |", "|---|---|---|"]
    blocks: list[list[str]] = []
    for s in settings():
        default = _cell(f"`{_yaml_value(s.default)}`")
        if s.depth == 0 and s.section:
            intro = [_cell(s.description), ""] if s.description else []
            blocks.append([f"### `{s.path}`", "", *intro, "| key | type | default | description |",
                           "|---|---|---|---|"])
        elif s.depth == 0:
            top.append(f"| `{s.path}` | {default} | {_cell(s.description)} |")
        elif s.section:
            blocks[-1].append(f"| `{s.path}` | {_cell(s.type)} | | {_cell(s.description)} |")
        else:
            blocks[-1].append(f"| `{s.path}` | {_cell(f'`{s.type}`')} | {default} | {_cell(s.description)} |")
    parts = ["### Top level", "", *top, ""] + ["\n".join(b) + "\n" for b in blocks]
    return "\n".join(parts)

START, END = "<!-- reference:start (generated by `make docs`) -->", "<!-- reference:end -->"


def write_reference(path: str) -> None:
    """Replace the generated part of a markdown file (between the markers) with the current reference."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    p.write_text(f"{head}{START}\n\n{reference_markdown()}\n{END}{tail}", encoding="utf-8")
