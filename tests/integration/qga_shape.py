"""What qga-test.py and qga-guest.py compare between two agents' replies: the keys and JSON types
of a reply, not its values."""


def shape(v):
    """JSON types and keys; a list's items merged into one shape (their keys united)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    merged = None
    for item in v:
        s = shape(item)
        if isinstance(s, dict) and isinstance(merged, dict):
            for k, x in s.items():
                merged.setdefault(k, x)
        elif merged is None:
            merged = s
    return ["list", merged]


def same_shape(a, b, path="$"):
    """None when alike, else where they differ. An empty list matches any list."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            d = same_shape(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if a[1] is None or b[1] is None:
            return None
        return same_shape(a[1], b[1], path + "[]")
    return None if a == b else f"{path}: {a} vs {b}"
