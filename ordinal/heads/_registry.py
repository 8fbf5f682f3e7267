"""Registry of ordinal heads, keyed by name (``@register_head("corn")``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ordinal.heads._base import OrdinalHead

__all__ = ["HEADS", "available_heads", "get_head_class", "register_head"]

HEADS: dict[str, type[OrdinalHead]] = {}

H = TypeVar("H", bound="type[OrdinalHead]")


def register_head(name: str):
    """Class decorator that registers an ordinal head under ``name``."""

    def decorator(cls: H) -> H:
        if name in HEADS and HEADS[name] is not cls:
            raise ValueError(f"an ordinal head named {name!r} is already registered")
        cls.name = name
        HEADS[name] = cls
        return cls

    return decorator


def available_heads() -> list[str]:
    """Names of the registered heads, sorted."""
    return sorted(HEADS)


def get_head_class(name: str) -> type[OrdinalHead]:
    """The head class registered as ``name``; the error lists the known names."""
    try:
        return HEADS[name]
    except KeyError:
        raise ValueError(
            f"unknown ordinal head {name!r}; choose one of {available_heads()}"
        ) from None
