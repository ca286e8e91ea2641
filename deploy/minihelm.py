"""minihelm: a small, strict, offline renderer for the Helm-template subset the
moat charts use (deploy/helm/*), so CI can render and check them without helm.

What it implements, following Go text/template and Helm's engine:
- actions with {{- -}} trimming and {{/* comments */}}; if / else if / else,
  range (lists, maps in sorted key order, `$i, $v :=`), with, define, end;
  variables ($, $x :=, $x =) with block scoping; pipelines and (sub-pipelines);
- Helm's values model: numbers from values files are float64 (so `1000000`
  prints as `1e+06` unless piped through `int`, exactly like Helm), missing map
  keys are nil, a field of nil is an error (Helm: "nil pointer evaluating");
- charts: Chart.yaml, values.yaml, templates/ (files starting with `_` only
  define), file:// dependencies with `condition`, value merging where null
  deletes a key, and `global` values passed down to subcharts;
- the functions listed in FUNCTIONS below (Helm's include/required/toYaml/
  toJson and the Sprig functions the charts call).

Anything else (an unknown function, printing a map, comparing an int with a
float) is an error rather than a guess. It is not helm: output is checked for
meaning (YAML documents), not byte-for-byte equality with `helm template`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
from decimal import Decimal
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml


class TemplateError(Exception):
    """A template that Helm would reject, or that uses what minihelm lacks."""


# ----------------------------------------------------------------- lexing

@dataclass
class Text:
    text: str


@dataclass
class Action:
    src: str
    line: int
    trim_left: bool
    trim_right: bool
    comment: bool = False


_WS = " \t\r\n"


def _lex(src: str, name: str) -> list:
    items: list = []
    i = 0
    while True:
        j = src.find("{{", i)
        if j < 0:
            items.append(Text(src[i:]))
            break
        items.append(Text(src[i:j]))
        line = src.count("\n", 0, j) + 1
        k = j + 2
        trim_left = src.startswith("-", k) and k + 1 < len(src) and src[k + 1] in _WS
        if trim_left:
            k += 1
        body_start = k
        # A comment: {{/* ... */}} with optional trim markers.
        stripped = src[k:].lstrip(_WS) if trim_left else src[k:]
        if stripped.startswith("/*"):
            c = src.find("*/", k)
            if c < 0:
                raise TemplateError(f"{name}:{line}: unclosed comment")
            rest = c + 2
            trim_right = False
            if src.startswith(" -}}", rest):
                trim_right, end = True, rest + 4
            elif src.startswith("}}", rest):
                end = rest + 2
            else:
                raise TemplateError(f"{name}:{line}: comment must end with */}}")
            items.append(Action("", line, trim_left, trim_right, comment=True))
            i = end
            continue
        # Find the closing }} outside string literals.
        p = k
        quote = None
        while p < len(src):
            ch = src[p]
            if quote:
                if ch == "\\" and quote == '"':
                    p += 2
                    continue
                if ch == quote:
                    quote = None
            elif ch in "\"`":
                quote = ch
            elif src.startswith("}}", p):
                break
            p += 1
        else:
            raise TemplateError(f"{name}:{line}: unclosed action")
        body = src[body_start:p]
        trim_right = len(body) >= 2 and body.endswith("-") and body[-2] in _WS
        if trim_right:
            body = body[:-1]
        items.append(Action(body.strip(), line, trim_left, trim_right))
        i = p + 2
    # Apply trim markers to neighbouring text.
    for n, item in enumerate(items):
        if isinstance(item, Action):
            if item.trim_left and n > 0 and isinstance(items[n - 1], Text):
                items[n - 1].text = items[n - 1].text.rstrip(_WS)
            if item.trim_right and n + 1 < len(items) and isinstance(items[n + 1], Text):
                items[n + 1].text = items[n + 1].text.lstrip(_WS)
    return items


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<decl>:=)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[|(),=])
    """,
    re.VERBOSE,
)


@dataclass
class Tok:
    kind: str
    value: Any


def _tokens(src: str, where: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise TemplateError(f"{where}: cannot read {src[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group()
        if kind == "ws":
            continue
        if kind == "str":
            out.append(Tok("lit", json.loads(text)))
        elif kind == "raw":
            out.append(Tok("lit", text[1:-1]))
        elif kind == "num":
            out.append(Tok("lit", float(text) if any(c in text for c in ".eE") else int(text)))
        elif kind == "var":
            name, *path = text.split(".")
            out.append(Tok("var", (name, path)))
        elif kind == "field":
            out.append(Tok("field", [] if text == "." else text[1:].split(".")))
        elif kind == "ident":
            if text in ("true", "false"):
                out.append(Tok("lit", text == "true"))
            elif text == "nil":
                out.append(Tok("lit", None))
            else:
                out.append(Tok("ident", text))
        else:
            out.append(Tok(text, text))
    return out


# ----------------------------------------------------------------- parsing

@dataclass
class Pipeline:
    decl: list[str]
    assign: bool  # `=` rather than `:=`
    commands: list[list[Any]]  # each command: list of operands (Tok or Pipeline)
    where: str


@dataclass
class Node:
    kind: str  # text, out, if, range, with
    text: str = ""
    pipe: Pipeline | None = None
    body: list = field(default_factory=list)
    else_body: list = field(default_factory=list)


def _parse_pipeline(toks: list[Tok], where: str) -> Pipeline:
    decl: list[str] = []
    assign = False
    # Declaration: $a [, $b] := or $a =
    for n in range(min(len(toks), 4)):
        if toks[n].kind in (":=", "="):
            names = [t for t in toks[:n] if t.kind != ","]
            if names and all(t.kind == "var" and not t.value[1] for t in names):
                decl = [t.value[0] for t in names]
                assign = toks[n].kind == "="
                toks = toks[n + 1:]
            break
    commands: list[list[Any]] = [[]]
    n = 0
    while n < len(toks):
        t = toks[n]
        if t.kind == "|":
            commands.append([])
        elif t.kind == "(":
            depth, m = 1, n + 1
            while m < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[m].kind, 0)
                m += 1
            if depth:
                raise TemplateError(f"{where}: unclosed (")
            commands[-1].append(_parse_pipeline(toks[n + 1:m - 1], where))
            n = m
            continue
        elif t.kind in (")", ",", ":=", "="):
            raise TemplateError(f"{where}: unexpected {t.kind!r}")
        else:
            commands[-1].append(t)
        n += 1
    if any(not c for c in commands):
        raise TemplateError(f"{where}: empty command in pipeline")
    return Pipeline(decl, assign, commands, where)


def _parse(items: list, name: str, defines: dict[str, list]) -> list:
    pos = 0

    def block(stop: tuple[str, ...]) -> tuple[list, str, Action | None]:
        nonlocal pos
        nodes: list = []
        while pos < len(items):
            item = items[pos]
            pos += 1
            if isinstance(item, Text):
                if item.text:
                    nodes.append(Node("text", text=item.text))
                continue
            if item.comment:
                continue
            where = f"{name}:{item.line}"
            toks = _tokens(item.src, where)
            if not toks:
                raise TemplateError(f"{where}: empty action")
            head = toks[0].value if toks[0].kind == "ident" else None
            if head in ("end", "else"):
                if head not in stop and not (head == "else" and "else" in stop):
                    raise TemplateError(f"{where}: unexpected {head}")
                return nodes, head, item
            if head in ("if", "with", "range"):
                node = Node(head, pipe=_parse_pipeline(toks[1:], where))
                node.body, ended, at = block(("end", "else"))
                while ended == "else":
                    rest = _tokens(at.src, where)[1:]
                    if rest and rest[0].kind == "ident" and rest[0].value == "if" and head == "if":
                        # else if: a nested if in the else branch sharing our end.
                        inner = Node("if", pipe=_parse_pipeline(rest[1:], f"{name}:{at.line}"))
                        inner.body, ended, at = block(("end", "else"))
                        node.else_body = [inner]
                        target = inner
                        while ended == "else":
                            rest = _tokens(at.src, where)[1:]
                            if rest and rest[0].kind == "ident" and rest[0].value == "if":
                                nxt = Node("if", pipe=_parse_pipeline(rest[1:], f"{name}:{at.line}"))
                                nxt.body, ended, at = block(("end", "else"))
                                target.else_body = [nxt]
                                target = nxt
                            elif rest:
                                raise TemplateError(f"{name}:{at.line}: unsupported else form")
                            else:
                                target.else_body, ended, at = block(("end",))
                        break
                    if rest:
                        raise TemplateError(f"{name}:{at.line}: unsupported else form")
                    node.else_body, ended, at = block(("end",))
                if ended != "end":
                    raise TemplateError(f"{where}: {head} without end")
                nodes.append(node)
            elif head == "define":
                if len(toks) != 2 or toks[1].kind != "lit" or not isinstance(toks[1].value, str):
                    raise TemplateError(f"{where}: define needs one string name")
                body, ended, _ = block(("end",))
                if ended != "end":
                    raise TemplateError(f"{where}: define without end")
                tname = toks[1].value
                if tname in defines and defines[tname][0] != name:
                    raise TemplateError(f"{where}: template {tname!r} also defined in {defines[tname][0]}")
                defines[tname] = (name, body)
            elif head in ("template", "block", "break", "continue"):
                raise TemplateError(f"{where}: {head} is not supported by minihelm; use include")
            else:
                nodes.append(Node("out", pipe=_parse_pipeline(toks, where)))
        if stop:
            raise TemplateError(f"{name}: missing {{{{ end }}}}")
        return nodes, "", None

    nodes, _, _ = block(())
    return nodes


# ----------------------------------------------------------------- values model

class Struct(dict):
    """A Go struct (.Release, .Chart, .Template): unknown fields are errors."""


def go_float(f: float) -> str:
    """fmt's %v of a float64, i.e. strconv.FormatFloat(f, 'g', -1, 64): the
    shortest digits, in %e form when the exponent is < -4 or >= 6 (this is
    why Helm prints a values-file 1000000 as 1e+06 unless piped through int)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    sign, digit_tuple, exp = Decimal(repr(f)).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    nd = len(digits)
    dp = nd + exp  # position of the decimal point relative to the digits
    x = dp - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return neg + digits + "0" * (dp - nd)
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def strval(v: Any) -> str:
    """Sprig's strval / fmt %v for the values a template handles."""
    if v is None:
        return ""  # Helm replaces "<no value>" with ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return v
    raise TemplateError(f"refusing to print a {type(v).__name__} ({v!r:.60}); use toYaml or toJson")


def truth(v: Any) -> bool:
    if v is None or v is False:
        return False
    if _is_num(v):
        return v != 0
    if isinstance(v, (str, list, dict)):
        return len(v) > 0
    return True


def _floats(v: Any) -> Any:
    """Helm reads values through JSON: every number becomes a float64."""
    if isinstance(v, dict):
        return {k: _floats(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_floats(x) for x in v]
    if _is_num(v):
        return float(v)
    return v


def _json_ready(v: Any) -> Any:
    """What encoding/json makes of a value: whole float64s print as integers."""
    if isinstance(v, dict):
        return {str(k): _json_ready(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_ready(x) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    return v


class _Dumper(yaml.SafeDumper):
    pass


def _str_repr(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_repr)


def to_yaml(v: Any) -> str:
    out = yaml.dump(_json_ready(v), Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                    allow_unicode=True, width=1 << 20)
    if out.endswith("...\n"):
        out = out[:-4]
    return out.rstrip("\n") if out != "\n" else ""


def to_json(v: Any) -> str:
    s = json.dumps(_json_ready(v), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _kind(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "composite"


def _eq(a: Any, *rest: Any) -> bool:
    if not rest:
        raise TemplateError("eq: missing argument for comparison")
    for b in rest:
        ka, kb = _kind(a), _kind(b)
        if ka != kb or ka in ("nil", "composite"):
            raise TemplateError(f"eq: incompatible types for comparison ({ka} {a!r} and {kb} {b!r})")
        if a == b:
            return True
    return False


def _order(a: Any, b: Any) -> int:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka not in ("int", "float", "string"):
        raise TemplateError(f"incompatible types for comparison ({ka} {a!r} and {kb} {b!r})")
    return (a > b) - (a < b)


def _empty(v: Any) -> bool:
    return not truth(v)


def _to_int(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, bool):
        return int(v)
    if _is_num(v):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            try:
                return int(float(v))
            except ValueError:
                return 0
    raise TemplateError(f"int: cannot convert {type(v).__name__}")


def _printf(fmt: str, *args: Any) -> str:
    out, n = [], 0

    def arg() -> Any:
        nonlocal n
        if n >= len(args):
            raise TemplateError(f"printf {fmt!r}: missing argument")
        n += 1
        return args[n - 1]

    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        verb = fmt[i + 1:i + 2]
        i += 2
        if verb == "%":
            out.append("%")
        elif verb == "s":
            a = arg()
            if not isinstance(a, str):
                raise TemplateError(f"printf %s of {_kind(a)} {a!r}: Go prints %!s(...)")
            out.append(a)
        elif verb == "d":
            a = arg()
            if not isinstance(a, int) or isinstance(a, bool):
                raise TemplateError(f"printf %d of {_kind(a)} {a!r}: Go prints %!d(...); pipe through int")
            out.append(str(a))
        elif verb == "v":
            out.append(strval(arg()))
        elif verb == "q":
            out.append(go_quote(strval(arg())))
        else:
            raise TemplateError(f"printf verb %{verb} not supported")
    if n != len(args):
        raise TemplateError(f"printf {fmt!r}: too many arguments")
    return "".join(out)


def _trunc(n: Any, s: str) -> str:
    n = _to_int(n)
    if n < 0:
        return s[n:] if len(s) + n > 0 else s
    return s[:n]


def _need_str(fname: str, v: Any) -> str:
    if not isinstance(v, str):
        raise TemplateError(f"{fname}: expected a string, got {_kind(v)} {v!r:.60}")
    return v


def _sprig_dict(*kv: Any) -> dict:
    if len(kv) % 2:
        kv = kv + ("",)
    return {strval(kv[i]): kv[i + 1] for i in range(0, len(kv), 2)}


def _index(coll: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(coll, dict):
            coll = coll.get(k)
        elif isinstance(coll, list):
            coll = coll[_to_int(k)]
        elif coll is None:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {_kind(coll)}")
    return coll


def _required(msg: str, v: Any = None) -> Any:
    if v is None or (isinstance(v, str) and v == ""):
        raise TemplateError(f"execution error: {msg}")
    return v


def _fail(msg: str) -> Any:
    raise TemplateError(f"execution error: {msg}")


def _coalesce(*vals: Any) -> Any:
    for v in vals:
        if not _empty(v):
            return v
    return None


def _join(sep: str, v: Any) -> str:
    if v is None:
        return ""
    if not isinstance(v, list):
        v = [v]
    return sep.join(strval(x) for x in v if x is not None)


def _len(v: Any) -> int:
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise TemplateError(f"len of {_kind(v)}")


def _indent(n: Any, s: str) -> str:
    pad = " " * _to_int(n)
    return pad + _need_str("indent", s).replace("\n", "\n" + pad)


FUNCTIONS = {
    "toYaml": to_yaml,
    "toJson": to_json,
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "quote": lambda *a: " ".join(go_quote(strval(x)) for x in a if x is not None),
    "default": lambda d, *given: d if not given or _empty(given[0]) else given[0],
    "empty": _empty,
    "required": _required,
    "fail": _fail,
    "coalesce": _coalesce,
    "printf": _printf,
    "trunc": _trunc,
    "trimSuffix": lambda suf, s: _need_str("trimSuffix", s)[: -len(suf)] if suf and s.endswith(suf) else s,
    "trimPrefix": lambda pre, s: _need_str("trimPrefix", s)[len(pre):] if pre and s.startswith(pre) else s,
    "replace": lambda old, new, s: _need_str("replace", s).replace(old, new),
    "upper": lambda s: _need_str("upper", s).upper(),
    "lower": lambda s: _need_str("lower", s).lower(),
    "contains": lambda sub, s: _need_str("contains", sub) in _need_str("contains", s),
    "hasPrefix": lambda pre, s: _need_str("hasPrefix", s).startswith(_need_str("hasPrefix", pre)),
    "sha256sum": lambda s: hashlib.sha256(_need_str("sha256sum", s).encode()).hexdigest(),
    "b64enc": lambda s: base64.b64encode(_need_str("b64enc", s).encode()).decode(),
    "toString": strval,
    "int": _to_int,
    "list": lambda *a: list(a),
    "dict": _sprig_dict,
    "hasKey": lambda d, k: isinstance(d, dict) and k in d,
    "index": _index,
    "join": _join,
    "len": _len,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "not": lambda v: not truth(v),
    "lt": lambda a, b: _order(a, b) < 0,
    "le": lambda a, b: _order(a, b) <= 0,
    "gt": lambda a, b: _order(a, b) > 0,
    "ge": lambda a, b: _order(a, b) >= 0,
}
_LAZY = {"and", "or", "include"}


# ----------------------------------------------------------------- execution

class _Exec:
    def __init__(self, defines: dict[str, tuple[str, list]]):
        self.defines = defines
        self.depth = 0

    def run(self, nodes: list, dot: Any, root: Any, scope: list) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "out":
                value = self.pipeline(node.pipe, dot, root, scope)
                if not node.pipe.decl:
                    try:
                        out.append(strval(value))
                    except TemplateError as e:
                        raise TemplateError(f"{node.pipe.where}: {e}") from None
            elif node.kind in ("if", "with"):
                mark = len(scope)
                value = self.pipeline(node.pipe, dot, root, scope)
                if truth(value):
                    out.append(self.run(node.body, value if node.kind == "with" else dot, root, scope))
                else:
                    del scope[mark:]
                    out.append(self.run(node.else_body, dot, root, scope))
                del scope[mark:]
            elif node.kind == "range":
                mark = len(scope)
                pipe = node.pipe
                value = self.pipeline(Pipeline([], False, pipe.commands, pipe.where), dot, root, scope)
                if value is None:
                    pairs: list = []
                elif isinstance(value, list):
                    pairs = list(enumerate(value))
                elif isinstance(value, dict):
                    pairs = [(k, value[k]) for k in sorted(value)]
                else:
                    raise TemplateError(f"{pipe.where}: range can't iterate over {_kind(value)} {value!r:.40}")
                if not pairs:
                    out.append(self.run(node.else_body, dot, root, scope))
                for k, v in pairs:
                    del scope[mark:]
                    if len(pipe.decl) == 1:
                        scope.append([pipe.decl[0], v])
                    elif len(pipe.decl) == 2:
                        scope.append([pipe.decl[0], k])
                        scope.append([pipe.decl[1], v])
                    out.append(self.run(node.body, v, root, scope))
                del scope[mark:]
        return "".join(out)

    def lookup(self, scope: list, name: str, where: str) -> Any:
        for entry in reversed(scope):
            if entry[0] == name:
                return entry[1]
        raise TemplateError(f"{where}: undefined variable {name}")

    def field(self, value: Any, path: list[str], where: str) -> Any:
        for i, key in enumerate(path):
            if value is None:
                shown = "." + ".".join(path[: i + 1])
                raise TemplateError(f"{where}: nil pointer evaluating interface {{}}{shown}")
            if isinstance(value, Struct):
                if key not in value:
                    raise TemplateError(f"{where}: can't evaluate field {key}")
                value = value[key]
            elif isinstance(value, dict):
                value = value.get(key)
            else:
                raise TemplateError(f"{where}: can't evaluate field {key} in type {_kind(value)}")
        return value

    def operand(self, op: Any, dot: Any, root: Any, scope: list, where: str) -> Any:
        if isinstance(op, Pipeline):
            return self.pipeline(op, dot, root, scope)
        if op.kind == "lit":
            return op.value
        if op.kind == "field":
            return self.field(dot, op.value, where)
        if op.kind == "var":
            name, path = op.value
            base = root if name == "$" else self.lookup(scope, name, where)
            return self.field(base, path, where)
        if op.kind == "ident":
            return self.call(op.value, [], dot, root, scope, where)
        raise TemplateError(f"{where}: unexpected operand {op!r}")

    def call(self, fname: str, args: list, dot: Any, root: Any, scope: list, where: str,
             piped: tuple = ()) -> Any:
        if fname in _LAZY:
            thunks = [lambda a=a: self.operand(a, dot, root, scope, where) for a in args]
            thunks += [lambda p=p: p for p in piped]
            if fname == "and":
                v = True
                for t in thunks:
                    v = t()
                    if not truth(v):
                        return v
                return v
            if fname == "or":
                v = False
                for t in thunks:
                    v = t()
                    if truth(v):
                        return v
                return v
            values = [t() for t in thunks]
            if len(values) != 2 or not isinstance(values[0], str):
                raise TemplateError(f"{where}: include needs a template name and a value")
            return self.include(values[0], values[1], where)
        fn = FUNCTIONS.get(fname)
        if fn is None:
            raise TemplateError(f"{where}: function {fname!r} not defined (or not supported by minihelm)")
        values = [self.operand(a, dot, root, scope, where) for a in args] + list(piped)
        try:
            return fn(*values)
        except TemplateError as e:
            raise TemplateError(f"{where}: {fname}: {e}") from None
        except TypeError as e:
            raise TemplateError(f"{where}: {fname}: wrong arguments ({e})") from None

    def pipeline(self, pipe: Pipeline, dot: Any, root: Any, scope: list) -> Any:
        piped: tuple = ()
        value = None
        for command in pipe.commands:
            head = command[0]
            if isinstance(head, Tok) and head.kind == "ident":
                value = self.call(head.value, command[1:], dot, root, scope, pipe.where, piped)
            else:
                if len(command) > 1 or piped:
                    raise TemplateError(f"{pipe.where}: can't give argument to non-function")
                value = self.operand(head, dot, root, scope, pipe.where)
            piped = (value,)
        if pipe.decl:
            if pipe.assign:
                for entry in reversed(scope):
                    if entry[0] == pipe.decl[0]:
                        entry[1] = value
                        break
                else:
                    raise TemplateError(f"{pipe.where}: undefined variable {pipe.decl[0]}")
            else:
                scope.append([pipe.decl[0], value])
        return value

    def include(self, name: str, data: Any, where: str) -> str:
        if name not in self.defines:
            raise TemplateError(f"{where}: no template {name!r}")
        self.depth += 1
        if self.depth > 100:
            raise TemplateError(f"{where}: include nested too deep")
        try:
            return self.run(self.defines[name][1], data, data, [])
        finally:
            self.depth -= 1


# ----------------------------------------------------------------- charts

def deep_merge(base: Any, override: Any) -> Any:
    """Helm's coalescing: maps merge, anything else replaces, null deletes."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    return copy.deepcopy(override)


def _load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@dataclass
class Chart:
    path: str
    meta: dict
    values: dict
    templates: dict[str, str]  # relative name -> source
    dependencies: list[tuple[dict, "Chart"]]


def load_chart(path: str) -> Chart:
    meta = _load_yaml(os.path.join(path, "Chart.yaml")) or {}
    values_path = os.path.join(path, "values.yaml")
    values = (_load_yaml(values_path) if os.path.exists(values_path) else None) or {}
    templates: dict[str, str] = {}
    tdir = os.path.join(path, "templates")
    if os.path.isdir(tdir):
        for fname in sorted(os.listdir(tdir)):
            full = os.path.join(tdir, fname)
            if os.path.isfile(full):
                with open(full, encoding="utf-8") as f:
                    templates[fname] = f.read()
    deps = []
    for dep in meta.get("dependencies") or []:
        repo = dep.get("repository", "")
        if not repo.startswith("file://"):
            raise TemplateError(f"{path}: dependency {dep.get('name')}: only file:// repositories are supported")
        sub = load_chart(os.path.normpath(os.path.join(path, repo[len("file://"):])))
        if sub.meta.get("name") != dep.get("name"):
            raise TemplateError(f"{path}: dependency {dep.get('name')} points at chart {sub.meta.get('name')}")
        deps.append((dep, sub))
    return Chart(path, meta, values, templates, deps)


def _condition(values: dict, condition: str | None) -> bool:
    if not condition:
        return True
    for path in condition.split(","):
        v: Any = values
        for key in path.strip().split("."):
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, bool):
            return v
    return True


def chart_values(chart: Chart, user: dict | None = None, parent_global: dict | None = None) -> dict:
    values = deep_merge(chart.values, user or {})
    if parent_global is not None:
        values["global"] = deep_merge(values.get("global") or {}, parent_global)
    return values


@dataclass
class Rendered:
    chart: str  # chart name (subcharts: parent/charts/sub)
    template: str
    text: str


def render(chart: Chart, release: str = "moat", namespace: str = "moat",
           user_values: dict | None = None) -> tuple[list[Rendered], dict[str, dict], str]:
    """Renders a chart and its enabled dependencies.

    Returns the rendered templates, the final values of every chart by name
    (for schema checks), and the top-level chart's NOTES.txt."""
    defines: dict[str, tuple[str, list]] = {}
    jobs: list[tuple[str, str, list, dict]] = []
    all_values: dict[str, dict] = {}

    def collect(c: Chart, values: dict, prefix: str, top: bool) -> None:
        all_values[c.meta["name"]] = values
        for fname, src in c.templates.items():
            label = f"{prefix}/templates/{fname}"
            nodes = _parse(_lex(src, label), label, defines)
            if fname.startswith("_"):
                continue
            if fname == "NOTES.txt" and not top:
                continue
            jobs.append((c.meta["name"], label, nodes, values))
        for dep, sub in c.dependencies:
            if not _condition(values, dep.get("condition")):
                continue
            sub_values = chart_values(sub, values.get(dep["name"]) or {}, values.get("global") or {})
            collect(sub, sub_values, f"{prefix}/charts/{sub.meta['name']}", False)

    collect(chart, chart_values(chart, user_values), chart.meta["name"], True)

    out: list[Rendered] = []
    notes = ""
    executor = _Exec(defines)
    chart_meta = {}

    def meta_of(name: str) -> dict:
        if name not in chart_meta:
            def find(c: Chart) -> Chart | None:
                if c.meta["name"] == name:
                    return c
                for _, s in c.dependencies:
                    r = find(s)
                    if r:
                        return r
                return None
            c = find(chart)
            m = c.meta
            chart_meta[name] = Struct(Name=m["name"], Version=str(m.get("version", "")),
                                      AppVersion=str(m.get("appVersion", "")),
                                      Description=m.get("description", ""), Type=m.get("type", "application"))
        return chart_meta[name]

    for cname, label, nodes, values in jobs:
        root = Struct(
            Values=_floats(copy.deepcopy(values)),
            Release=Struct(Name=release, Namespace=namespace, Service="Helm", IsInstall=True,
                           IsUpgrade=False, Revision=1),
            Chart=meta_of(cname),
            Template=Struct(Name=label, BasePath=label.rsplit("/", 1)[0]),
        )
        text = executor.run(nodes, root, root, [])
        if label.endswith("NOTES.txt"):
            notes = text
        else:
            out.append(Rendered(cname, label, text))
    return out, all_values, notes


_DOC_SPLIT = re.compile(r"(?m)^---[ \t]*$")


def manifests(rendered: list[Rendered]) -> list[tuple[str, dict]]:
    """Splits rendered templates into YAML documents, dropping empty ones."""
    docs = []
    for r in rendered:
        for part in _DOC_SPLIT.split(r.text):
            if not part.strip():
                continue
            try:
                doc = yaml.safe_load(part)
            except yaml.YAMLError as e:
                raise TemplateError(f"{r.template}: rendered output is not YAML: {e}\n{part}") from None
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise TemplateError(f"{r.template}: rendered document is not a mapping")
            docs.append((r.template, doc))
    return docs
