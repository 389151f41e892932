"""The families by name (families/__init__.py imports every family module, which registers itself)."""
from __future__ import annotations

_FAMILIES: dict = {}  # name -> Family instance


def register(cls):
    """Class decorator: make a Family subclass available by its name."""
    if cls.name in _FAMILIES:
        raise ValueError(f"entropy model family {cls.name!r} is registered twice")
    _FAMILIES[cls.name] = cls()
    return cls


def get(name: str):
    """The registered family of that name; ValueError naming the known ones."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown entropy model family {name!r} (this aecodec has {', '.join(names())})") from None


def names() -> list[str]:
    return sorted(_FAMILIES)


def from_flags(means: bool, context: bool) -> str:
    """The family that a config of the first format (flags, no family name) describes."""
    for fam in _FAMILIES.values():
        if fam.legacy_flags is not None and fam.legacy_flags == {k: True for k, v in
                                                                 (("means", means), ("context", context)) if v}:
            return fam.name
    raise ValueError(f"no entropy model family has means={means}, context={context}")


def lineage(source: str, target: str) -> list:
    """The families a model of `source` passes through to become `target` (source excluded), by
    each family's `parent`; ValueError when target does not descend from source."""
    path, name = [], target
    while name != source:
        if name is None:
            raise ValueError(f"a {source} model cannot become a {target} model")
        fam = get(name)
        path.append(fam)
        name = fam.parent
    return path[::-1]
