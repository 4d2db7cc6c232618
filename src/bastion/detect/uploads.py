"""Payloads aimed at the server-side parser of an uploaded file's format.

An upload is harmless bytes to a filter that reads text, and a program to the library the
application hands it to: an archive whose entries climb out of the extraction directory (zip/tar
slip: vCenter CVE-2021-21972), an Office or OpenDocument file whose XML parts declare external
entities (XXE, also when the part is deflated, as every real .docx is), an ImageMagick vector
script (MVG/MSL) or PostScript whose resources are shell commands (ImageTragick CVE-2016-3714,
Ghostscript `%pipe%`), a DjVu annotation that ExifTool evaluates as Perl (GitLab CVE-2021-22205).

Files are the multipart parts with a file name or a non-text type, and a body sent as a file
(`application/zip`, `image/*`, `application/octet-stream`...). Each is recognized by its first
bytes, whatever its name or declared type says (the attacks rely on the parser sniffing too).
Compressed content is inflated with a bound (`MAX_INFLATED` bytes per request), so a bomb costs
nothing. Findings name the part and the entry, never the content.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

from bastion.config import BastionConfig
from bastion.detect.httpsyntax import mask, readable_body
from bastion.engine.registry import BuildContext
from bastion.exchange import Exchange
from bastion.verdict import Finding, Severity

ARCHIVE_TRAVERSAL = "upload-archive-traversal"
ARCHIVE_XXE = "upload-xxe"
IMAGE_SCRIPT = "upload-image-script"
METADATA_CODE = "upload-metadata-code"

MAX_INFLATED = 1 << 20  # bytes inflated per request, all entries together
MAX_ENTRIES = 256  # archive entries read per file
MAX_PARTS = 64

# Bodies that are structured data, not a file: their parsers are other detectors' business.
_DATA_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain", "application/graphql")
# An entry name that leaves the extraction directory: a `..` component, or an absolute path.
_CLIMB = re.compile(rb"(?:^|[/\\])\.\.(?:[/\\]|$)|^(?:/|[A-Za-z]:[/\\]|\\\\)")
# XML parts of Office/ODF/EPUB/JAR documents and of any zip: where a DOCTYPE is parsed.
_XML_ENTRY = re.compile(rb"\.(?:xml|rels|svg|xsd|xsl|xslt|vml|opf|ncx|xhtml|html?|plist|dtd|xmi|wsdl|kml|gpx)$",
                        re.IGNORECASE)
_EXTERNAL_ENTITY = re.compile(
    rb"<!ENTITY\s+(?:%\s*)?[\w.-]+\s+(?:SYSTEM|PUBLIC)\b|<!DOCTYPE\s+[\w:.-]+\s+(?:SYSTEM|PUBLIC)\s+[\"']|"
    rb"<xi:include\b|<!ENTITY\s+[\w.-]+\s+[\"'](?:&[\w.-]+;\s*){3,}",
    re.IGNORECASE,
)
# ImageMagick vector scripts: MVG (primitives, `viewbox`) and MSL (an XML <image> program).
_MVG_WORDS = rb"(?:viewbox|affine|fill|stroke|image|push|pop|encoding|font|gravity|clip-path|decorate)\b"
_MVG = re.compile(
    rb"\A\s*(?:push\s+graphic-context(?:[ \t]*[\r\n]|\s+" + _MVG_WORDS + rb")"
    rb"|viewbox\s+[-\d.]+\s+[-\d.]+\s+[-\d.]+\s+[-\d.]+|fill\s+['\"]?url\()",
    re.IGNORECASE,
)
_MSL = re.compile(rb"<image\b[^>]*>\s*<(?:read|write)\b", re.IGNORECASE)
# What makes a vector script run or read something: a URL resource with shell metacharacters
# (ImageMagick hands `url(https://...)` to a delegate command line), a coder prefix that reads a
# file or runs a script, or a nested image read from a path.
_IMAGE_PAYLOAD = re.compile(
    rb"url\(\s*['\"]?[^)\n]{0,300}?[|`;\"$]|\b(?:ephemeral|msl|mvg|text|label|caption|pango|show|win|x|vid|rar|epi|ps|eps|"
    rb"https?|ftps?|file):[@/\\'\"]{0,1}[^\s'\")]{1,200}|image\s+(?:over|copy|src|add|subtract)\s+[\d.,\s]+['\"][^'\"]{1,300}['\"]|"
    rb"%pipe%|\(\s*\|[^)]{1,200}\)",
    re.IGNORECASE,
)
# PostScript (Ghostscript sandbox escapes open `%pipe%command` as a file).
_POSTSCRIPT = re.compile(rb"\A\s*%!(?:PS)?", re.IGNORECASE)
_PS_PAYLOAD = re.compile(rb"%pipe%|\(\s*\|\s*[^)]{1,200}\)\s*\(w\)\s*file|/OutputFile\s*\(\s*%pipe%", re.IGNORECASE)
# A DjVu annotation (ANTa chunk) whose metadata carries Perl: ExifTool parsed it with `eval`, so
# `"\c${...}` or `" . qx{...} . "` run (CVE-2021-22205); the DjVu can sit inside a JPEG too.
_DJVU_CODE = re.compile(
    rb"\(\s*metadata\b[\s\S]{0,4000}?(?:qx\s*[{(\[/|]|\\c\$\{|\$\{[^}]{0,200}\}|`[^`\n]{1,200}`|"
    rb"\b(?:system|exec|eval|open)\s*\(|\bdo\s*\{)",
)


class UploadsDetector:
    name = "uploads"

    def __init__(self) -> None:
        self.observe = False

    def request_body(self, ex: Exchange) -> None:
        req = ex.request
        mt = readable_body(req)
        if mt is None:
            return
        body = req.body
        mtype = mt.type
        budget = [MAX_INFLATED]
        if mtype.startswith("multipart/"):
            boundary = mt.params.get("boundary", "")
            if boundary:
                for name, data in _files(body, boundary):
                    if self._file(ex, data, name, budget):
                        return
        elif mtype not in _DATA_TYPES and not mtype.endswith(("+json", "/xml", "+xml")):
            self._file(ex, body, "body", budget)

    def _file(self, ex: Exchange, data: bytes, name: str, budget: list[int]) -> bool:
        """Check one uploaded file; True when a finding was added."""
        head = data[:8]
        if head.startswith(b"\x1f\x8b") and budget[0] > 0:  # gzip: a .tar.gz, a .svgz
            inflated = _inflate(data, 16 + zlib.MAX_WBITS, budget)
            if inflated:
                return self._file(ex, inflated, name, budget)
            return False
        if head.startswith(b"PK\x03\x04"):
            return self._zip(ex, data, name, budget)
        if len(data) >= 263 and data[257:262] == b"ustar":
            return self._tar(ex, data, name)
        if _MVG.match(data) or (b"<image" in data[:4096] and _MSL.search(data[:65536])):
            if _IMAGE_PAYLOAD.search(data[:65536]):
                self._hit(ex, IMAGE_SCRIPT, "ImageMagick vector script reading a URL, a file or a command", name)
                return True
            return False
        if _POSTSCRIPT.match(data) and _PS_PAYLOAD.search(data[:65536]):
            self._hit(ex, IMAGE_SCRIPT, "PostScript opening a pipe", name)
            return True
        if b"(metadata" in data and (b"AT&TFORM" in data or b"ANTa" in data) and _DJVU_CODE.search(data):
            self._hit(ex, METADATA_CODE, "DjVu annotation with Perl code (ExifTool)", name)
            return True
        return False

    def _zip(self, ex: Exchange, data: bytes, name: str, budget: list[int]) -> bool:
        for entry, method, content in _zip_entries(data):
            if _CLIMB.search(entry):
                self._hit(ex, ARCHIVE_TRAVERSAL, "archive entry outside the extraction directory", name,
                          entry.decode("latin-1"))
                return True
            if _XML_ENTRY.search(entry) and budget[0] > 0:
                if method == 8:
                    text = _inflate(content, -zlib.MAX_WBITS, budget)
                elif method == 0:
                    text = content[:65536]
                else:
                    continue
                if b"<!" in text and _EXTERNAL_ENTITY.search(text):
                    self._hit(ex, ARCHIVE_XXE, "document part declaring an external entity (XXE)", name,
                              entry.decode("latin-1"))
                    return True
        return False

    def _tar(self, ex: Exchange, data: bytes, name: str) -> bool:
        for entry, link in _tar_entries(data):
            if _CLIMB.search(entry) or (link and _CLIMB.search(link)):
                self._hit(ex, ARCHIVE_TRAVERSAL, "archive entry outside the extraction directory", name,
                          entry.decode("latin-1"))
                return True
        return False

    def _hit(self, ex: Exchange, rule: str, message: str, name: str, entry: str = "") -> None:
        ex.add(Finding(rule_id=rule, detector=self.name, message=message, severity=Severity.CRITICAL,
                       score=int(Severity.CRITICAL), zone="body", name=mask(name, 48),
                       evidence=mask(entry, 48) if entry else "", tags=("upload",)))


def _files(body: bytes, boundary: str) -> Iterator[tuple[str, bytes]]:
    """(field or file name, content) of the multipart parts that are files."""
    delim = b"--" + boundary.encode("latin-1", "replace")
    for part in body.split(delim)[1:MAX_PARTS + 1]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
            if not sep:
                continue
        lower = head.lower()
        if b"filename" not in lower and b"content-type" not in lower:
            continue  # a plain form field
        if b"filename" not in lower and b"content-type: text/plain" in lower:
            continue
        m = re.search(rb'filename\*?=\s*"?([^";\r\n]*)', head, re.IGNORECASE) or re.search(
            rb'\bname=\s*"?([^";\r\n]*)', head, re.IGNORECASE)
        label = m.group(1).decode("utf-8", "replace") if m else "file"
        if content.endswith(b"\r\n"):
            content = content[:-2]
        yield label, content


def _zip_entries(data: bytes) -> Iterator[tuple[bytes, int, bytes]]:
    """(name, compression method, data from the entry's start) of the local headers in `data`, and
    the names of the central directory (which an extractor may use instead)."""
    pos = data.find(b"PK\x03\x04")
    n = 0
    while pos >= 0 and n < MAX_ENTRIES and pos + 30 <= len(data):
        n += 1
        method = int.from_bytes(data[pos + 8:pos + 10], "little")
        csize = int.from_bytes(data[pos + 18:pos + 22], "little")
        nlen = int.from_bytes(data[pos + 26:pos + 28], "little")
        xlen = int.from_bytes(data[pos + 28:pos + 30], "little")
        start = pos + 30 + nlen + xlen
        yield data[pos + 30:pos + 30 + nlen], method, data[start:start + (csize or MAX_INFLATED)]
        pos = data.find(b"PK\x03\x04", start + (csize if csize and not data[pos + 6] & 8 else 0))
    pos = data.find(b"PK\x01\x02")
    while pos >= 0 and n < 2 * MAX_ENTRIES and pos + 46 <= len(data):
        n += 1
        nlen = int.from_bytes(data[pos + 28:pos + 30], "little")
        yield data[pos + 46:pos + 46 + nlen], -1, b""
        pos = data.find(b"PK\x01\x02", pos + 46 + nlen)


def _tar_entries(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(name, link target) of the ustar headers in `data`."""
    pos = 0
    n = 0
    while pos + 512 <= len(data) and n < MAX_ENTRIES:
        block = data[pos:pos + 512]
        if block[257:262] != b"ustar":
            break
        n += 1
        name = block[:100].split(b"\x00", 1)[0]
        prefix = block[345:500].split(b"\x00", 1)[0]
        link = block[157:257].split(b"\x00", 1)[0] if block[156:157] in (b"1", b"2") else b""
        yield (prefix + b"/" + name if prefix else name), link
        try:
            size = int(block[124:136].split(b"\x00", 1)[0].strip() or b"0", 8)
        except ValueError:
            break
        pos += 512 + (size + 511) // 512 * 512


def _inflate(data: bytes, wbits: int, budget: list[int]) -> bytes:
    if budget[0] <= 0:
        return b""
    try:
        out = zlib.decompressobj(wbits).decompress(data, budget[0])
    except zlib.error:
        return b""
    budget[0] -= len(out)
    return out


def make(config: BastionConfig, ctx: BuildContext) -> UploadsDetector:
    return UploadsDetector()
