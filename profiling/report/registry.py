"""The report's section registry: a section is one function ReportInputs -> HTML fragment.

A new section (early exits, modular reuse, ...) is one decorated function in a module imported by
profiling/report/__init__.py; sections appear in registration order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .inputs import ReportInputs

SectionFn = Callable[[ReportInputs], str]


@dataclass(frozen=True)
class Section:
    name: str  # registry key and the HTML id of the section
    title: str  # heading shown in the report
    render: SectionFn  # returns an HTML fragment (no heading); "" hides the section


_SECTIONS: dict[str, Section] = {}


def register_section(name: str, title: str) -> Callable[[SectionFn], SectionFn]:
    """Decorator registering a section; registering a name twice is an error."""
    def deco(fn: SectionFn) -> SectionFn:
        if name in _SECTIONS:
            raise ValueError(f"report section {name!r} is already registered (by {_SECTIONS[name].render.__module__})")
        _SECTIONS[name] = Section(name, title, fn)
        return fn
    return deco


def list_sections() -> list[str]:
    """Registered section names, in report order."""
    return list(_SECTIONS)


def get_section(name: str) -> Section:
    """The registered section `name`; KeyError naming the registered ones otherwise."""
    if name not in _SECTIONS:
        raise KeyError(f"report section {name!r}: not registered (registered: {list_sections()})")
    return _SECTIONS[name]
