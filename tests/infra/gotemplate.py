"""A small, faithful renderer for the subset of Go's text/template that the Composition's
function-go-templating steps use (infra/triggers/composition/composition.yaml).

Go's semantics where they matter: `{{-`/`-}}` trim white space; actions may span lines;
`$x := v` declares a variable in the innermost block (`if`/`range` body) and `$x = v` assigns
the nearest declared one, also from an inner block; `if` takes Go's truth (false, 0, nil,
empty); `range` sets the dot (and an optional variable); a pipeline's value is the last
argument of the next command; printing follows fmt's %v for the scalars the templates print;
`toJson` is Go's json.Marshal (sorted keys, no spaces, <, >, &, U+2028 and U+2029 escaped);
`quote` is sprig's: Go's %q (strconv.Quote) of each non-nil argument; `printf` knows %s (of
strings), %v (of scalars) and %%. Functions: the sprig ones used (default, quote, mul, list,
dict, toJson, printf, index, eq, ne, not, and, or, len) and function-go-templating's
getResourceCondition and getComposedResource.
Anything else raises TemplateError, so a template that grows past this subset fails its test
instead of rendering wrongly.
"""
import json
import re
from collections import ChainMap


class TemplateError(Exception):
    pass


ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _lex(source):
    """Text and action tokens, with Go's trim markers applied."""
    tokens, pos = [], 0
    for m in ACTION.finditer(source):
        text = source[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        tokens.append(("text", text))
        tokens.append(("action", m.group(2), bool(m.group(3))))
        pos = m.end()
    tokens.append(("text", source[pos:]))
    out = []
    trim_next = False
    for tok in tokens:
        if tok[0] == "text":
            text = tok[1].lstrip() if trim_next else tok[1]
            out.append(("text", text))
            trim_next = False
        else:
            if not tok[1].startswith("/*"):
                out.append(("action", tok[1]))
            trim_next = tok[2]
    return out


def _parse(tokens):
    """A tree of ("text", s) | ("out", pipeline) | ("if", [(cond, body)...], else_body) |
    ("range", var, pipeline, body) | ("set", var, pipeline, declares)."""
    pos = 0

    def block(stop):
        nonlocal pos
        body = []
        while pos < len(tokens):
            tok = tokens[pos]
            if tok[0] == "text":
                body.append(tok)
                pos += 1
                continue
            action = tok[1]
            word = action.split(None, 1)[0] if action else ""
            if word in stop or (word == "else" and "else" in stop):
                return body, action
            pos += 1
            if word == "if":
                branches, else_body = [(action[2:].strip(), None)], None
                inner, end = block({"else", "end"})
                branches[0] = (branches[0][0], inner)
                while end.startswith("else"):
                    pos += 1
                    rest = end[4:].strip()
                    if rest.startswith("if "):
                        cond = rest[3:].strip()
                        inner, end = block({"else", "end"})
                        branches.append((cond, inner))
                    else:
                        else_body, end = block({"end"})
                pos += 1
                body.append(("if", branches, else_body))
            elif word == "range":
                spec = action[5:].strip()
                m = re.match(r"^(\$\w+)\s*:=\s*(.*)$", spec, re.S)
                var, pipeline = (m.group(1), m.group(2)) if m else (None, spec)
                inner, _ = block({"end"})
                pos += 1
                body.append(("range", var, pipeline, inner))
            elif word in ("with", "define", "template", "block"):
                raise TemplateError(f"{{{{ {word} }}}} is outside the supported subset")
            else:
                m = re.match(r"^(\$\w+)\s*(:?=)\s*(.*)$", action, re.S)
                body.append(("set", m.group(1), m.group(3), m.group(2) == ":=") if m else ("out", action))
        return body, None

    tree, end = block(set())
    if end is not None:
        raise TemplateError(f"unexpected {{{{ {end} }}}}")
    return tree


TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s()|]+')


def _split_pipeline(text):
    parts, depth, current = [], 0, []
    for tok in TOKEN.findall(text):
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if tok == "|" and depth == 0:
            parts.append(current)
            current = []
        else:
            current.append(tok)
    parts.append(current)
    return parts


class _Int64(int):
    """An int64 result (sprig's mul), which Go prints in full; other numbers are float64."""


def _go_string(value):
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Int64):
        return str(int(value))
    if isinstance(value, (int, float)):
        # The request's numbers are float64 in Go (it is JSON), and %v prints them with %g:
        # 1e+06 from a million on.
        if value != int(value) or abs(value) >= 1e6:
            raise TemplateError(f"printing the number {value!r} as Go does is not supported")
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise TemplateError("printing a map or slice directly is not supported: use toJson")
    return str(value)


def _truth(value):
    return value not in (None, False, 0, "", [], {}) and value != 0.0


def _json_numbers(value):
    """json.Marshal prints an integral float64 without a fraction (2, not 2.0)."""
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    if isinstance(value, float) and not isinstance(value, bool):
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
        if abs(value) < 1e-4 or abs(value) >= 1e16:
            raise TemplateError(f"encoding the number {value!r} as Go does is not supported")
    return value


def _go_json(value):
    text = json.dumps(_json_numbers(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def _go_quote(value):
    """strconv.Quote: printable runes (Unicode letters, marks, numbers, punctuation, symbols and
    the ASCII space, which is what str.isprintable() means for one character) as they are,
    the rest escaped."""
    out = []
    for ch in _go_string(value):
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _quote(*values):
    """sprig's quote: each non-nil argument quoted, joined by spaces."""
    return " ".join(_go_quote(v) for v in values if v is not None)


def _printf(fmt, *args):
    out, args, i = [], list(args), 0
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
        elif verb in ("s", "v") and args:
            arg = args.pop(0)
            if verb == "s" and not isinstance(arg, str):
                raise TemplateError(f"printf %s of {arg!r} is not supported")
            out.append(_go_string(arg))
        else:
            raise TemplateError(f"printf %{verb} (or a missing argument) is not supported")
    if args:
        raise TemplateError("printf with extra arguments is not supported")
    return "".join(out)


RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _condition(kind, resource):
    """function-go-templating's getResourceCondition: of a composed resource's wrapper
    (`resource.status`) or of the object itself (`status`); Unknown when absent."""
    resource = resource or {}
    inner = resource.get("resource") if isinstance(resource.get("resource"), dict) else None
    status = (inner or {}).get("status") if inner and "status" in inner else resource.get("status")
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == kind:
            time = c.get("lastTransitionTime")
            if time is not None and not (isinstance(time, str) and RFC3339_UTC.fullmatch(time)):
                raise TemplateError(f"a lastTransitionTime of {time!r} is not supported")
            return {"Type": kind, "Status": c.get("status", "Unknown"), "Reason": c.get("reason", ""),
                    "Message": c.get("message", ""), "LastTransitionTime": time}
    return {"Type": kind, "Status": "Unknown", "Reason": "", "Message": "", "LastTransitionTime": None}


def _composed(request, name):
    """function-go-templating's getComposedResource: observed.resources[name].resource, or nil."""
    found = _index(request, "observed", "resources", name, "resource")
    return found if isinstance(found, dict) else None


def _index(value, *keys):
    for key in keys:
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list):
            value = value[int(key)]
        else:
            raise TemplateError(f"cannot index {type(value).__name__}")
    return value


FUNCTIONS = {
    "index": _index,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truth(a),
    "and": lambda *xs: next((x for x in xs if not _truth(x)), xs[-1]),
    "or": lambda *xs: next((x for x in xs if _truth(x)), xs[-1]),
    "len": lambda x: len(x or []),
    "list": lambda *xs: list(xs),
    "dict": lambda *kv: {kv[i]: kv[i + 1] for i in range(0, len(kv), 2)},
    "default": lambda d, v=None: v if _truth(v) else d,
    "quote": _quote,
    "printf": _printf,
    "mul": lambda *xs: _product(xs),
    "toJson": _go_json,
    "getResourceCondition": _condition,
    "getComposedResource": _composed,
}


def _product(xs):
    out = 1
    for x in xs:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x != int(x):
            raise TemplateError(f"mul of {x!r} is not supported")
        out *= int(x)
    return _Int64(out)


class _Evaluated:
    def __init__(self, value):
        self.value = value

    def __str__(self):
        return f"({self.value!r})"


class _Renderer:
    def __init__(self, data):
        self.root = data

    def operand(self, tok, dot, scope):
        if tok.startswith('"'):
            return json.loads(tok)
        if tok.startswith("`"):
            return tok[1:-1]
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "nil":
            return None
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok == ".":
            return dot
        if tok.startswith("."):
            return _index(dot, *tok[1:].split("."))
        if tok.startswith("$"):
            name, _, path = tok.partition(".")
            if name not in scope:
                raise TemplateError(f"undefined variable {name}")
            value = scope[name]
            return _index(value, *path.split(".")) if path else value
        raise TemplateError(f"unexpected {tok!r}")

    def command(self, toks, dot, scope, piped, has_piped):
        """A command's words: tokens (str) and the values of parenthesised pipelines (_Evaluated,
        so that a string result is not read as a token again)."""
        args, i = [], 0
        while i < len(toks):
            if toks[i] == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(toks[j], 0)
                    j += 1
                args.append(_Evaluated(self.pipeline(" ".join(toks[i + 1:j - 1]), dot, scope)))
                i = j
            else:
                args.append(toks[i])
                i += 1
        head = args[0] if args else None
        if isinstance(head, str) and head in FUNCTIONS:
            values = [a.value if isinstance(a, _Evaluated) else self.operand(a, dot, scope) for a in args[1:]]
            if has_piped:
                values.append(piped)
            return FUNCTIONS[head](*values)
        if isinstance(head, str) and re.fullmatch(r"[A-Za-z_]\w*", head) and head not in ("true", "false", "nil"):
            raise TemplateError(f"function {head!r} is outside the supported subset")
        if len(args) != 1 or has_piped:
            raise TemplateError(f"cannot evaluate {' '.join(map(str, args))}")
        return head.value if isinstance(head, _Evaluated) else self.operand(head, dot, scope)

    def pipeline(self, text, dot, scope):
        value, has_value = None, False
        for toks in _split_pipeline(text):
            value = self.command(toks, dot, scope, value, has_value)
            has_value = True
        return value

    def render(self, tree, dot, scope, out):
        """`scope` is a ChainMap, innermost block first."""
        scope = scope.new_child()
        for node in tree:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "out":
                out.append(_go_string(self.pipeline(node[1], dot, scope)))
            elif kind == "set":
                _, name, pipeline, declares = node
                value = self.pipeline(pipeline, dot, scope)
                if declares:
                    scope[name] = value
                else:
                    holder = next((m for m in scope.maps if name in m), None)
                    if holder is None:
                        raise TemplateError(f"undefined variable {name}")
                    holder[name] = value
            elif kind == "if":
                for cond, body in node[1]:
                    if _truth(self.pipeline(cond, dot, scope)):
                        self.render(body, dot, scope, out)
                        break
                else:
                    if node[2] is not None:
                        self.render(node[2], dot, scope, out)
            elif kind == "range":
                items = self.pipeline(node[2], dot, scope) or []
                for item in (items.values() if isinstance(items, dict) else items):
                    inner = scope.new_child()
                    if node[1]:
                        inner[node[1]] = item
                    self.render(node[3], item, inner, out)


def render(template, data):
    out = []
    _Renderer(data).render(_parse(_lex(template)), data, ChainMap({"$": data}), out)
    return "".join(out)
