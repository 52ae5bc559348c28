"""Reading sources.yaml as YAML 1.2 reads it, with the line of every key, so that a mistake is
reported with the key's path and line."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel


class SourcesError(ValueError):
    """sources.yaml is wrong: the message names the file, the line and the key."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: `true`/`false` only (`Yes`, `No`, `on` are words)."""


_BOOL = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(path: Path, text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The document and the line of each key (by its path); a key given twice is an error."""
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            _mark_lines(loader, node, (), lines, path)
        return (loader.construct_document(node) if node is not None else None), lines
    except yaml.MarkedYAMLError as broken:
        mark = broken.problem_mark
        line = f", line {mark.line + 1}" if mark else ""
        raise SourcesError(f"{path.name}{line}: not valid YAML: {broken.problem}") from None
    finally:
        loader.dispose()


def _mark_lines(
    loader: _Yaml12Loader, node: yaml.Node, at: tuple[Any, ...], lines: dict[tuple[Any, ...], int], path: Path
) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if (*at, key) in lines:
                raise SourcesError(
                    f"{path.name}, line {key_node.start_mark.line + 1} ({_dotted((*at, key))}): `{key}` is given twice"
                    f" (first on line {lines[(*at, key)]}): keep one."
                )
            lines[(*at, key)] = key_node.start_mark.line + 1
            _mark_lines(loader, value_node, (*at, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _mark_lines(loader, item, (*at, index), lines, path)


def where(path: Path, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> str:
    """`sources.yaml, line 12 (sources.salesforce.formats): `: the deepest part of `loc` with a line."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return f"{path.name}, line {lines[loc[:end]]} ({_dotted(loc) or 'top'}): "
    return f"{path.name}: "


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part).lower() if isinstance(part, bool) else str(part) for part in loc)


def explain(error: Any, loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    """pydantic's error in the words of this file (whose model is `root`): an unknown key gets a did-you-mean."""
    if error["type"] == "extra_forbidden":
        known = _keys_at(loc[:-1], root)
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f"did you mean `{guess[0]}`?" if guess else "the keys here are " + ", ".join(known) + "."
        return f"unknown key `{loc[-1]}`: {hint}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ") + ("" if message.endswith(".") else ".")


def _keys_at(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """The keys the model at `loc` takes (walking the models' annotations along the path)."""
    kind: Any = root
    for part in loc:
        kind = _unwrapped(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[str(part)].annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]
    kind = _unwrapped(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [name for name in kind.model_fields if name != "name"]
    return []


def _unwrapped(kind: Any) -> Any:
    """`Source | None` and `Annotated[...]` as the model or dict inside."""
    while get_origin(kind) in (Annotated, Union) or type(kind).__name__ == "UnionType":
        kind = next(a for a in get_args(kind) if a is not type(None))
    return kind
