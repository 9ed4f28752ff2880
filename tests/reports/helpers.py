"""Reading rendered reports back: an HTML tag/text collector and SVG parsing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser

SVG_NS = "{http://www.w3.org/2000/svg}"


@dataclass
class Parsed:
    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    style: str = ""

    def all_text(self) -> str:
        return "".join(self.text)

    def names(self) -> set[str]:
        return {name for name, _ in self.tags}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parsed.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.parsed.style += data
        else:
            self.parsed.text.append(data)


def parse_html(document: str) -> Parsed:
    collector = _Collector()
    collector.feed(document)
    collector.close()
    return collector.parsed


def inline_svgs(document: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", document, flags=re.DOTALL)


def parse_svg(svg: str) -> ET.Element:
    """Parse an SVG document as strict XML (raises on anything malformed)."""
    return ET.fromstring(svg)


def svg_text(root: ET.Element) -> str:
    return "".join(root.itertext())


def svg_elements(root: ET.Element) -> set[str]:
    return {element.tag.removeprefix(SVG_NS) for element in root.iter()}
