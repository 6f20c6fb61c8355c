"""Reading documents: every format's text and images, exactly where deterministic, and its errors.

All inputs are made here: PDFs with reportlab, .docx files with python-docx, the rest as bytes.
"""

from __future__ import annotations

import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from jinaclip_integrations.errors import DocumentError
from jinaclip_integrations.ingest.readers import FORMATS, Document, ImagePart, TextSection, format_of, read_document


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def _text(document: Document) -> str:
    (section,) = document.sections
    return section.text


# --- formats ----------------------------------------------------------------------------------


def test_format_of_by_suffix_case_insensitive():
    assert format_of("a/B.PDF") == "pdf"
    assert format_of(Path("notes.MarkDown")) == "markdown"
    assert format_of("table.tsv") == format_of("table.csv") == "csv"
    assert format_of("photo.HEIC") == "image"
    assert format_of("page.xhtml") == "html"
    assert format_of("old.doc") is None
    assert format_of("README") is None
    assert all(suffix == suffix.lower() and suffix.startswith(".") for suffix in FORMATS)


def test_image_bytes_pass_untouched():
    data = b"\x89PNG not decoded here"
    assert read_document(data, "image") == Document("image", images=(ImagePart(data),))


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="unknown document format 'xls'"):
        read_document(b"x", "xls")


def test_importing_readers_imports_no_heavy_library():
    code = (
        "import sys, jinaclip_integrations.ingest.readers; "
        "print([m for m in ('pypdfium2', 'docx', 'PIL', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "fmt", "hint"), [("pypdfium2", "pdf", "pypdfium2"), ("docx", "docx", "python-docx")]
)
def test_missing_library_says_what_to_install(monkeypatch, module, fmt, hint):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError) as caught:
        read_document(b"whatever", fmt)
    assert str(caught.value) == f'reading {fmt.upper()} files needs {hint}: pip install "jinaclip-integrations[{fmt}]"'


# --- text, markdown ---------------------------------------------------------------------------


def test_text_drops_bom_and_normalizes_line_ends():
    document = read_document(b"\xef\xbb\xbfline one\r\nline two\rline three\n", "text")
    assert document.sections == (TextSection("line one\nline two\nline three\n"),)
    assert document.title is None


def test_text_not_utf8_names_the_byte():
    with pytest.raises(DocumentError) as caught:
        read_document(b"seventeen bytes..\xff rest", "text")
    assert str(caught.value) == "not UTF-8 text (byte 17)"
    with pytest.raises(DocumentError, match=r"^not UTF-8 text \(byte 5\)$"):  # counted in the file, BOM included
        read_document(b"\xef\xbb\xbfab\xc3(", "text")


@pytest.mark.parametrize("fmt", ["text", "markdown", "html", "csv"])
def test_empty_or_blank_text_files_have_no_sections(fmt):
    assert read_document(b"", fmt).sections == ()
    assert read_document(b" \r\n\t\n", fmt).sections == ()


def test_markdown_keeps_front_matter_and_titles_from_first_h1():
    source = "---\ntitle: x\n# a yaml comment\n---\n```sh\n# not a heading\n```\n## Sub\n# The  Title #\ntext\r\n"
    document = read_document(source.encode(), "markdown")
    assert document.sections == (TextSection(source.replace("\r\n", "\n"), markdown=True),)
    assert document.title == "The  Title"
    assert read_document(b"no heading\n#hashtag\n", "markdown").title is None


# --- HTML -------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><meta charset="iso-8859-1"><title>Caf\xe9  menu</title>
<style>p { color: red }</style><script>var hidden = "<p>no</p>";</script></head>
<body><nav>Home</nav><h1>Welcome</h1>
<p>Some   <b>bold</b>
text &amp; more&nbsp;here.<br>Next line</p>
<ul><li>one</li><li> two <i>three</i></li><li><p>four</p></li><li> </li></ul>
<div hidden>secret <p>also secret</p></div><!-- a comment --><noscript>enable JS</noscript>
<template><p>template</p></template><svg><title>icon</title><text>svg</text></svg>
<table><tr><th>Dish</th><th>Price</th></tr><tr><td>Soup</td><td><p>4 \x80</p><td>hot</tr></table>
<pre>  code
    indented


</pre><h2></h2><h3>Last   words</h3><p>&lt;end&gt; \x93q\x94</p></body></html>"""

PAGE_TEXT = """# Caf\xe9 menu

Home

# Welcome

Some bold text & more here.
Next line

- one

- two three

- four

Dish | Price

Soup | 4 \u20ac | hot

  code
    indented

### Last words

<end> \u201cq\u201d"""


def test_html_visible_text_as_markdown():
    document = read_document(PAGE.encode("latin-1"), "html")  # the bytes \x80, \x93: windows-1252
    assert document.title == "Caf\xe9 menu"
    assert document.sections == (TextSection(PAGE_TEXT, markdown=True),)


def test_html_title_not_repeated_when_first_heading_says_it():
    page = b"<html><head><title>Guide</title></head><body><h1></h1><h2> Guide </h2><p>x</p></body></html>"
    document = read_document(page, "html")
    assert (document.title, _text(document)) == ("Guide", "## Guide\n\nx")


def test_html_encodings():
    assert _text(read_document("\ufeff<p>\u00fcber</p>".encode("utf-16-le"), "html")) == "\u00fcber"
    http_equiv = b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>\xd0\xd2\xc9</p>'
    assert _text(read_document(http_equiv, "html")) == "\u043f\u0440\u0438"
    assert _text(read_document(b'<meta charset="nonsense"><p>\xc3\xa9</p>', "html")) == "\u00e9"  # unknown: UTF-8
    with pytest.raises(DocumentError, match=r"^no charset declared and not UTF-8 \(byte 3\)$"):
        read_document(b"<p>\xe9</p>", "html")


# --- CSV --------------------------------------------------------------------------------------


def test_csv_rows_as_header_value_paragraphs():
    data = b'\xef\xbb\xbfname,age,city\r\nBob, 42 ,Paris\r\n"Smith, J",,\r\n,,\r\nAnn,7,Rome,extra\r\n'
    assert read_document(data, "csv") == Document(
        "csv",
        (
            TextSection(
                "name: Bob; age: 42; city: Paris\n\nname: Smith, J\n\nname: Ann; age: 7; city: Rome; column 4: extra"
            ),
        ),
    )


def test_csv_sniffs_semicolons_and_tsv_uses_tabs():
    assert _text(read_document(b"a;b\n1;x, y\n2;z\n", "csv")) == "a: 1; b: x, y\n\na: 2; b: z"
    assert _text(read_document(b"who\twhat\nSmith, J\tcomma, inside\n", "csv")) == "who: Smith, J; what: comma, inside"


def test_csv_header_only_and_malformed():
    assert _text(read_document(b"name,age\n", "csv")) == "name,age"
    with pytest.raises(DocumentError, match=r"^malformed CSV \(line 2\): ',' expected after '\"'$"):
        read_document(b'a,b\n1,"b"c\n', "csv")
    with pytest.raises(DocumentError, match="^not UTF-8 text"):
        read_document(b"a,b\n\xff,1\n", "csv")


# --- PDF --------------------------------------------------------------------------------------


def _pdf(tmp_path: Path, *, encrypt: str | None = None) -> bytes:
    """Three pages: page 1 draws a 40x40 JPEG inside a form XObject, page 3 a 64x64 PNG (twice), an
    8x8 one and the same JPEG again."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(jpeg, quality=95)
    out = io.BytesIO()
    pdf = canvas.Canvas(out, encrypt=encrypt)
    pdf.drawString(72, 720, "First page.")
    pdf.beginForm("logo")
    pdf.drawImage(str(jpeg), 0, 0)
    pdf.endForm()
    pdf.doForm("logo")
    pdf.showPage()
    pdf.drawString(72, 720, "Second   page   ")
    pdf.drawString(72, 700, "two lines, an exam-")
    pdf.drawString(72, 686, "ple of hyphenation")
    pdf.showPage()
    pdf.drawString(72, 720, "A unique sentence on page three.")
    big = ImageReader(Image.new("RGB", (64, 64), (200, 20, 20)))
    pdf.drawImage(big, 72, 400, width=64, height=64)
    pdf.drawImage(big, 200, 400, width=32, height=32)
    pdf.drawImage(ImageReader(Image.new("RGB", (8, 8), (0, 0, 255))), 300, 400)
    pdf.drawImage(str(jpeg), 400, 400)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_pdf_pages_and_images(tmp_path):
    document = read_document(_pdf(tmp_path), "pdf")
    assert document.format == "pdf"
    assert document.sections == (
        TextSection("First page.", page=1),
        TextSection("Second page\ntwo lines, an example of hyphenation", page=2),
        TextSection("A unique sentence on page three.", page=3),
    )
    assert [(image.page, image.index, _size(image.data)) for image in document.images] == [
        (1, 0, (40, 40)),  # inside the form XObject
        (3, 1, (64, 64)),  # drawn twice, kept once; the 8x8 one and the repeated JPEG left out
    ]
    assert document.images[0].data.startswith(b"\xff\xd8")  # plain JPEG passed as is
    assert document.images[1].data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(document.images[1].data)) as image:
        assert image.convert("RGB").getpixel((5, 5)) == (200, 20, 20)
    assert document.warnings == ()


def test_pdf_max_images_and_unrenderable_images_are_told(tmp_path, monkeypatch):
    data = _pdf(tmp_path)
    document = read_document(data, "pdf", max_images=1)
    assert [image.page for image in document.images] == [1]
    assert document.warnings == ("3 more images left out (max_images=1; duplicates not told apart)",)

    import pypdfium2

    def broken(image, **kwargs):
        raise RuntimeError("cannot decode")

    monkeypatch.setattr(pypdfium2.PdfImage, "get_filters", broken)  # the reader's first step with every image
    document = read_document(data, "pdf")
    assert document.images == ()
    assert document.warnings[0] == "page 1: image 1 could not be rendered: cannot decode"
    assert len(document.warnings) == 4 and len(document.sections) == 3


def test_pdf_encrypted_and_damaged(tmp_path):
    with pytest.raises(DocumentError) as caught:
        read_document(_pdf(tmp_path, encrypt="pw"), "pdf")
    assert str(caught.value) == "encrypted PDF (needs a password)"
    for damaged in (b"", b"%PDF-1.4\nnot really a pdf"):
        with pytest.raises(DocumentError, match=r"^damaged PDF: .*Data format error"):
            read_document(damaged, "pdf")


def test_pdf_reading_from_threads(tmp_path):
    data = _pdf(tmp_path)
    expected = read_document(data, "pdf")
    with ThreadPoolExecutor(4) as pool:
        assert all(result == expected for result in pool.map(lambda _: read_document(data, "pdf"), range(8)))


# --- docx -------------------------------------------------------------------------------------


def _docx(core_title: str = "") -> bytes:
    import docx
    from docx.shared import Pt

    document = docx.Document()
    document.core_properties.title = core_title
    document.add_heading("Quarterly  report", 0)
    document.add_paragraph("Opening words.")
    document.add_heading("Numbers", 1)
    table = document.add_table(rows=2, cols=3)
    for cell, text in zip(table.rows[0].cells, ["Region", "Q1", "Q2"], strict=True):
        cell.text = text
    table.rows[1].cells[0].text = "North"
    table.rows[1].cells[1].merge(table.rows[1].cells[2]).text = "12"
    document.add_paragraph("First point", style="List Bullet")
    document.add_heading("Deep", 9)
    document.add_paragraph("")
    document.add_picture(io.BytesIO(_png((50, 40), (1, 2, 3))), width=Pt(50))
    document.add_paragraph().add_run().add_picture(io.BytesIO(_png((50, 40), (1, 2, 3))))  # the same picture
    document.add_picture(io.BytesIO(_png((10, 10), (9, 9, 9))))
    document.add_paragraph("Line one\nline two\tend")
    document.add_picture(io.BytesIO(_png((33, 90), (4, 5, 6))))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_body_in_order_as_markdown():
    document = read_document(_docx(), "docx")
    assert document.title == "Quarterly report"
    assert document.sections == (
        TextSection(
            "# Quarterly report\n\nOpening words.\n\n# Numbers\n\nRegion | Q1 | Q2\nNorth | 12\n\n- First point\n\n"
            "###### Deep\n\nLine one\nline two end",
            markdown=True,
        ),
    )
    assert [(image.page, image.index, _size(image.data)) for image in document.images] == [
        (None, 0, (50, 40)),
        (None, 1, (33, 90)),
    ]
    assert document.warnings == ()
    assert read_document(_docx("From properties"), "docx").title == "From properties"
    assert len(read_document(_docx(), "docx", max_images=1).images) == 1


def test_docx_not_a_docx():
    for data in (b"", b"plain text", _zip({"hello.txt": "hi"})):
        with pytest.raises(DocumentError, match=r"^not a valid \.docx file: "):
            read_document(data, "docx")


def _zip(files: dict[str, str]) -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()
