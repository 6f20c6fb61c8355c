"""CSV and TSV files as text: one paragraph per data row, each value named by its column.

A row of bare values says little to an embedding model; ``header: value`` pairs keep each value's
meaning in every chunk the row ends up in. Only the standard library's ``csv`` is needed. (The
module is not named ``csv`` so that it cannot be mistaken for that one.)
"""

from __future__ import annotations

import csv
import io

from ...errors import DocumentError


def csv_text(text: str) -> str:
    """One paragraph per data row, ``header: value; ...`` (empty values left out).

    A tab in the first line means TSV; otherwise the delimiter is sniffed from the first 64 KiB
    (comma if that fails). A file with only its header gives the header line.
    """
    first_line = text.split("\n", 1)[0]
    if "\t" in first_line:
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",;|\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        rows = [[" ".join(cell.split()) for cell in row] for row in reader]
    except csv.Error as err:
        raise DocumentError(f"malformed CSV (line {reader.line_num}): {err}") from err
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    header, data = rows[0], rows[1:]
    if not data:
        return delimiter.join(header)
    names = [name or f"column {i + 1}" for i, name in enumerate(header)]
    names += [f"column {i + 1}" for i in range(len(names), max(map(len, data)))]
    return "\n\n".join(
        "; ".join(f"{name}: {value}" for name, value in zip(names, row, strict=False) if value) for row in data
    )
