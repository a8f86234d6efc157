"""Reading a village's nomination list from an uploaded CSV or XLSX file, and the Excel template.

Villages keep their list in Excel, so the upload accepts what Excel produces:

* XLSX (detected by its zip signature, the ``.xlsx`` name or its content type), read with
  ``read_only=True, data_only=True``: formulas are never evaluated, only the value Excel cached is
  read. The sheet called "Nominasi" is read first, else the first sheet with a header row.
* CSV in UTF-8 (with or without the BOM Excel's "CSV UTF-8" writes), UTF-16 with a BOM (Excel's
  "Unicode Text"), or, when the bytes are not UTF-8, Windows-1252 (Excel's plain "CSV" on
  Windows) with a warning. The separator may be a comma, a semicolon (Excel in an Indonesian
  locale) or a tab.

Headers are matched case-insensitively in English (the API contract) or Indonesian. Values are
only *read* here, never judged: every value reaches :func:`domain.worker_rows.validate_row` as
text, after light normalisation of the shapes spreadsheets produce (numbers, date cells,
``15/05/1985``, ``Laki-laki``, ``Guru Ngaji``). Text such as ``=HYPERLINK(...)`` or
``'; DROP TABLE`` passes through unchanged, for the validation to reject per field.

Row numbers are the ones the person sees in the sheet: the header is usually row 1, so the first
worker is row 2; blank rows are skipped but still counted.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from itertools import chain
from typing import Any, TypeAlias

import openpyxl
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from domain.categories import DESA_ONLY, Category
from domain.worker_rows import WorkerRow

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 5000
# Rows of a sheet read at most, blank ones counted: a tiny workbook can name a cell at row
# 1,048,576, and reading up to it means a million blank rows per sheet.
MAX_SHEET_ROWS = 10_000
# Sheets looked at for the list's header: a workbook of many sheets costs no more than this.
MAX_SHEETS = 10
# An XLSX is a zip: refuse one that would unpack to more than this (a "zip bomb").
MAX_UNZIPPED_BYTES = 100 * 1024 * 1024
# Columns beyond this are not read (a stray cell in column XFD must not cost 16,384 cells a row).
MAX_COLUMNS = 100
# The header row is looked for among the first rows that are not blank (a title may come first).
HEADER_SEARCH_ROWS = 20

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEMPLATE_SHEET = "Nominasi"
CATEGORY_SHEET = "Kategori"

REQUIRED_COLUMNS = ("nik", "full_name", "birth_date", "gender", "category")
WORKER_COLUMNS = tuple(f.name for f in fields(WorkerRow))
VILLAGE_CODE = "village_code"

# Accepted header names per column, after _header_key (lower case, separators as "_").
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "nik": ("nik", "no_nik", "nomor_nik", "nomor_induk_kependudukan", "no_ktp", "nomor_ktp"),
    "full_name": ("full_name", "nama", "nama_lengkap"),
    "birth_date": ("birth_date", "tanggal_lahir", "tgl_lahir"),
    "gender": ("gender", "jenis_kelamin", "jk", "l_p"),
    "category": ("category", "kategori", "jabatan"),
    "phone": (
        "phone",
        "no_hp",
        "nomor_hp",
        "hp",
        "telepon",
        "no_telepon",
        "nomor_telepon",
        "no_telp",
    ),
    "declared_income_idr": ("declared_income_idr", "penghasilan", "penghasilan_idr", "upah"),
    VILLAGE_CODE: ("village_code", "kode_desa"),
}
_COLUMN_BY_ALIAS = {alias: column for column, names in COLUMN_ALIASES.items() for alias in names}

_GENDERS = {
    "l": "L",
    "lk": "L",
    "laki_laki": "L",
    "lakilaki": "L",
    "laki": "L",
    "pria": "L",
    "male": "L",
    "p": "P",
    "pr": "P",
    "perempuan": "P",
    "wanita": "P",
    "female": "P",
}

_CATEGORY_VALUES = frozenset(c.value for c in Category)
_CATEGORY_ALIASES = {
    "kades": Category.KEPALA_DESA,
    "perangkat": Category.PERANGKAT_DESA,
    "anggota_bpd": Category.BPD,
    "badan_permusyawaratan_desa": Category.BPD,
    "anggota_badan_permusyawaratan_desa": Category.BPD,
    "perlindungan_masyarakat": Category.LINMAS,
    "guru_mengaji": Category.GURU_NGAJI,
    "non_perangkat_desa": Category.NON_PERANGKAT,
    "aparatur_non_perangkat": Category.NON_PERANGKAT,
    "ketua_rt": Category.RT_RW,
    "ketua_rw": Category.RT_RW,
    "ketua_rt_rw": Category.RT_RW,
    "rt": Category.RT_RW,
    "rw": Category.RT_RW,
    "petani_kelapa_sawit": Category.PETANI_SAWIT,
}

CATEGORY_DESCRIPTIONS: dict[Category, str] = {
    Category.KEPALA_DESA: "Kepala Desa",
    Category.PERANGKAT_DESA: "Perangkat Desa (sekretaris, kaur, kasi, kadus)",
    Category.BPD: "Anggota Badan Permusyawaratan Desa",
    Category.NON_PERANGKAT: "Aparatur non-perangkat desa",
    Category.LINMAS: "Perlindungan Masyarakat",
    Category.GURU_NGAJI: "Guru ngaji",
    Category.OPERATOR_DESA: "Operator desa",
    Category.RT_RW: "Ketua RT/RW",
    Category.PETANI_SAWIT: "Petani kelapa sawit",
}

# The template's example row: a woman born 15 May 1985 (day 15 + 40 = 55 in the NIK).
SAMPLE_BIRTH_DATE = dt.date(1985, 5, 15)
SAMPLE_INCOME_IDR = 1_000_000
SAMPLE_ROW = WorkerRow(
    nik="1603015505850003",
    full_name="Siti Aminah",
    birth_date=SAMPLE_BIRTH_DATE.isoformat(),
    gender="P",
    category=Category.GURU_NGAJI.value,
    phone="081234567890",
    declared_income_idr=str(SAMPLE_INCOME_IDR),
)

_ISO_DATE = re.compile(
    r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)
_DMY_DATE = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SCIENTIFIC = re.compile(r"\d(?:[.,]\d+)?[eE]\+?\d+")

Cell: TypeAlias = object  # a cell value as openpyxl or the csv module gives it
Rows: TypeAlias = Iterator[tuple[int, Sequence[Cell]]]  # (row number in the sheet, the values)


class UploadError(Exception):
    """The file cannot be read as a nomination list; ``field`` is the form field to blame."""

    def __init__(self, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class ParsedList:
    """The rows of a nomination list as typed, with the sheet's row numbers."""

    rows: list[tuple[int, WorkerRow]] = field(default_factory=list)
    village_code: str | None = None
    warnings: list[str] = field(default_factory=list)


# --- entry point --------------------------------------------------------------------------------


def parse_nomination_file(
    data: bytes, *, filename: str | None, content_type: str | None
) -> ParsedList:
    """Read an uploaded CSV or XLSX nomination list; :class:`UploadError` if it cannot be read."""
    if len(data) > MAX_BYTES:
        raise UploadError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if not data.strip():
        raise UploadError("the file is empty")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise UploadError(
            "this is an old Excel .xls file (or a password-protected workbook): "
            "save it as .xlsx or as CSV UTF-8, without a password, and upload that"
        )
    name = (filename or "").lower()
    mime = (content_type or "").split(";")[0].strip().lower()
    warnings: list[str] = []
    if (
        data.startswith(b"PK\x03\x04")
        or name.endswith((".xlsx", ".xlsm"))
        or mime == XLSX_CONTENT_TYPE
    ):
        return _parse_xlsx(data, warnings)
    return _parse_csv(data, warnings)


# --- XLSX ---------------------------------------------------------------------------------------


def _parse_xlsx(data: bytes, warnings: list[str]) -> ParsedList:
    unreadable = (
        "the file is not a readable Excel workbook (.xlsx); open it in Excel and save it again "
        "as .xlsx or as CSV UTF-8"
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UploadError(unreadable) from exc
    if unpacked > MAX_UNZIPPED_BYTES:
        raise UploadError(
            f"the workbook unpacks to more than {MAX_UNZIPPED_BYTES // (1024 * 1024)} MiB; "
            "upload only the sheet with the list"
        )
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # anything openpyxl trips over in a foreign file is "unreadable"
        raise UploadError(unreadable) from exc
    try:
        sheets = sorted(
            workbook.worksheets, key=lambda ws: ws.title.strip().lower() != TEMPLATE_SHEET.lower()
        )[:MAX_SHEETS]
        with_header = [
            sheet
            for sheet in sheets
            if sheet.title.strip().lower() != CATEGORY_SHEET.lower()
            and _find_header(_sheet_rows(sheet))[0] is not None
        ]
        # No header anywhere: report what is missing against the first sheet.
        chosen = with_header[0] if with_header else workbook.worksheets[0]
        if len(with_header) > 1:
            others = ", ".join(repr(sheet.title) for sheet in with_header[1:])
            warnings.append(
                f"only the sheet {chosen.title!r} was read; the sheet(s) {others} were ignored: "
                "put all workers on one sheet"
            )
        return _parse_table(_sheet_rows(chosen), warnings)
    except UploadError:
        raise
    except Exception as exc:  # a corrupt sheet inside a valid zip
        raise UploadError(unreadable) from exc
    finally:
        workbook.close()


def _sheet_rows(sheet: Any) -> Rows:
    """The sheet's rows with their numbers, blank ones included (read-only mode yields the gaps
    too), up to ``MAX_SHEET_ROWS``. A row beyond it (openpyxl yields one only when the sheet has
    something there or further down) is refused, not walked to."""
    rows = sheet.iter_rows(max_row=MAX_SHEET_ROWS + 1, max_col=MAX_COLUMNS, values_only=True)
    for number, values in enumerate(rows, start=1):
        if number > MAX_SHEET_ROWS:
            raise UploadError(
                f"the sheet {sheet.title!r} has rows beyond row {MAX_SHEET_ROWS:,}: keep the list "
                f"within the first {MAX_SHEET_ROWS:,} rows (delete what is below it)"
            )
        yield number, values


# --- CSV ----------------------------------------------------------------------------------------


def _parse_csv(data: bytes, warnings: list[str]) -> ParsedList:
    text = _decode(data, warnings)
    if not text.strip():
        raise UploadError("the file is empty")
    delimiter = _sniff_delimiter(text)

    def rows() -> Rows:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            # A record is a row in Excel even when a quoted cell spans several lines.
            yield from enumerate(reader, start=1)
        except csv.Error as exc:
            raise UploadError(f"the CSV file cannot be read: {exc}") from exc

    return _parse_table(rows(), warnings)


def _decode(data: bytes, warnings: list[str]) -> str:
    not_text = (
        "the file is neither an Excel workbook (.xlsx) nor a CSV text file; "
        "save the list from Excel as .xlsx or as CSV UTF-8"
    )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise UploadError(not_text) from exc
    elif b"\x00" in data:
        raise UploadError(not_text)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            warnings.append(
                "the file is not UTF-8; it was read as Windows-1252 (Excel's plain 'CSV' on "
                "Windows): check names with accents, or save as 'CSV UTF-8' to be sure"
            )
    # Text has next to no control characters; binary data read as Latin-1 is full of them.
    controls = sum(1 for _ in _CONTROL.finditer(text))
    if "\x00" in text or controls > len(text) // 100:
        raise UploadError(not_text)
    return text


def _sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: whichever makes the most known headers, then the most columns."""
    head = "\n".join(text.splitlines()[:HEADER_SEARCH_ROWS])

    def score(delimiter: str) -> tuple[int, int]:
        records = list(csv.reader(io.StringIO(head), delimiter=delimiter))
        known = max((_known_count(r) for r in records), default=0)
        widest = max((len(r) for r in records), default=0)
        return known, widest

    return max((",", ";", "\t"), key=score)  # max() keeps the first on ties: the comma


# --- the table, whatever the format -------------------------------------------------------------


def _parse_table(rows: Rows, warnings: list[str]) -> ParsedList:
    header_number, header, above, rest = _find_header(rows)
    if header_number is None or header is None:
        raise UploadError("the file is empty")
    if above:
        warnings.append(
            f"row(s) {_numbers(above)} above the header row (row {header_number}) were ignored"
        )
    columns = _map_columns(header_number, header, warnings)

    parsed = ParsedList(warnings=warnings)
    numeric_niks: list[int] = []
    scientific_niks: list[int] = []
    padded_phones: list[int] = []
    village_codes: dict[str, list[int]] = {}
    for number, values in rest:
        cells = {column: _cell(values, index) for column, index in columns.items()}
        if all(_text(cells.get(c)) is None for c in WORKER_COLUMNS):
            continue
        if len(parsed.rows) >= MAX_ROWS:
            raise UploadError(
                f"the list has more than {MAX_ROWS} workers; split it into several files"
            )
        raw_nik = cells.get("nik")
        nik = _text(raw_nik)
        if _is_number(raw_nik):
            numeric_niks.append(number)
        elif nik is not None:
            if nik.startswith("'") and nik[1:].strip().isdigit():
                nik = nik[1:].strip()
            if _SCIENTIFIC.fullmatch(nik):
                scientific_niks.append(number)
        raw_phone = cells.get("phone")
        phone = _text(raw_phone)
        if _is_number(raw_phone) and phone is not None and phone.startswith("8"):
            phone = "0" + phone  # 0812… typed into a number cell lost its leading zero
            padded_phones.append(number)
        row = WorkerRow(
            nik=nik,
            full_name=_text(cells.get("full_name")),
            birth_date=_birth_date(_text(cells.get("birth_date"))),
            gender=_gender(_text(cells.get("gender"))),
            category=_category(_text(cells.get("category"))),
            phone=phone,
            declared_income_idr=_text(cells.get("declared_income_idr")),
        )
        if (row.nik, row.full_name) == (SAMPLE_ROW.nik, SAMPLE_ROW.full_name):
            warnings.append(
                f"row {number} is the template's example ({SAMPLE_ROW.full_name}, "
                f"{SAMPLE_ROW.nik}): delete it unless you mean to nominate her"
            )
        code = _village_code(_text(cells.get(VILLAGE_CODE)))
        if code is not None:
            village_codes.setdefault(code, []).append(number)
        parsed.rows.append((number, row))

    if numeric_niks:
        warnings.append(
            f"the NIK in row(s) {_numbers(numeric_niks)} is stored as a number; Excel keeps only "
            "15 digits of a number, so a 16th digit may have become 0: format the NIK column as "
            "Text and type the NIKs again"
        )
    if scientific_niks:
        warnings.append(
            f"the NIK in row(s) {_numbers(scientific_niks)} looks like 1.60301E+15: Excel showed "
            "it as a number and its digits are lost; format the NIK column as Text and type the "
            "NIKs again"
        )
    if padded_phones:
        warnings.append(
            f"the phone number in row(s) {_numbers(padded_phones)} was stored as a number and had "
            "lost its leading 0; it was put back"
        )
    if not parsed.rows:
        raise UploadError("the file has a header row but no workers under it")
    if len(village_codes) > 1:
        listed = "; ".join(f"{code!r} in row(s) {_numbers(n)}" for code, n in village_codes.items())
        raise UploadError(f"the file names more than one village code: {listed}")
    parsed.village_code = next(iter(village_codes), None)
    return parsed


def _find_header(
    rows: Rows,
) -> tuple[int | None, Sequence[Cell] | None, list[int], Rows]:
    """The header row (number, values), the non-blank rows above it, and the rows after it.

    The header is the first row with at least two known column names among the first
    HEADER_SEARCH_ROWS non-blank rows; if there is none, the first non-blank row (so the error
    names what is missing from it). ``(None, None, [], rows)`` for a sheet with nothing in it.
    """
    seen: list[tuple[int, Sequence[Cell]]] = []
    for number, values in rows:
        if all(_text(v) is None for v in values):
            continue
        seen.append((number, values))
        if _known_count(values) >= 2:
            above = [n for n, _ in seen[:-1]]
            return number, values, above, rows
        if len(seen) >= HEADER_SEARCH_ROWS:
            break
    if not seen:
        return None, None, [], rows
    number, values = seen[0]
    return number, values, [], chain(seen[1:], rows)


def _map_columns(header_number: int, header: Sequence[Cell], warnings: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    names: dict[str, str] = {}
    unknown: list[str] = []
    for index, value in enumerate(header):
        name = _text(value)
        if name is None:
            continue
        column = _COLUMN_BY_ALIAS.get(_header_key(name))
        if column is None:
            unknown.append(name)
        elif column in columns:
            raise UploadError(
                f"the columns {names[column]!r} and {name!r} both mean {column}; keep one of them"
            )
        else:
            columns[column] = index
            names[column] = name
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        accepted = "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        raise UploadError(
            f"the header row (row {header_number}) has no column for {', '.join(missing)}. "
            f"Accepted column names — {accepted}"
        )
    if unknown:
        warnings.append(
            f"column(s) {', '.join(repr(u) for u in unknown)} are not part of the list and were "
            f"ignored (the columns are {', '.join(WORKER_COLUMNS)})"
        )
    return columns


def _header_key(name: str) -> str:
    key = re.sub(r"[\s\-/.]+", "_", name.strip().lower().replace("*", "").replace(":", ""))
    return key.strip("_")


def _known_count(values: Iterable[Cell]) -> int:
    keys = {_header_key(t) for v in values if (t := _text(v)) is not None}
    return sum(1 for k in keys if k in _COLUMN_BY_ALIAS)


# --- cell values --------------------------------------------------------------------------------


def _cell(values: Sequence[Cell], index: int) -> Cell:
    return values[index] if index < len(values) else None


def _text(value: Cell) -> str | None:
    """A cell as the text the person meant; None when blank."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.603011505850001e15 -> "1603011505850001"
    text = str(value).strip()
    return text or None


def _is_number(value: Cell) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _birth_date(text: str | None) -> str | None:
    """``1985-05-15``, ``15/05/1985``, ``15-05-1985`` or ``15.05.1985`` as ISO; else unchanged."""
    if text is None:
        return None
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = match.group(1, 3, 4)
    elif match := _DMY_DATE.fullmatch(text):
        day, month, year = match.group(1, 3, 4)
    else:
        return text
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return text  # 31/02/1985 or 05/15/1985: validate_row says what is wrong


def _gender(text: str | None) -> str | None:
    if text is None:
        return None
    return _GENDERS.get(_header_key(text), text)


def _category(text: str | None) -> str | None:
    if text is None:
        return None
    key = _header_key(text)
    if key in _CATEGORY_VALUES:
        return key
    alias = _CATEGORY_ALIASES.get(key)
    return alias.value if alias is not None else text


def _village_code(text: str | None) -> str | None:
    """Kepmendagri codes are written ``16.03.01.2011``; ten bare digits get their dots back."""
    if text is not None and text.isdigit() and len(text) == 10:
        return f"{text[:2]}.{text[2:4]}.{text[4:6]}.{text[6:]}"
    return text


def _numbers(numbers: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    more = len(numbers) - limit
    return f"{shown} and {more} more" if more > 0 else shown


# --- the template -------------------------------------------------------------------------------

_TEMPLATE_HEADERS: dict[str, tuple[str, int]] = {
    # column: (comment shown on the header cell, column width)
    "nik": ("NIK, 16 angka (kolom ini berformat Teks agar tidak terpotong)", 20),
    "full_name": ("Nama lengkap sesuai KTP", 28),
    "birth_date": ("Tanggal lahir, YYYY-MM-DD (atau DD/MM/YYYY)", 13),
    "gender": ("L atau P", 8),
    "category": ("Kategori pekerja: lihat sheet Kategori", 18),
    "phone": ("No. HP (boleh kosong)", 16),
    "declared_income_idr": ("Penghasilan per bulan dalam rupiah (boleh kosong: 1.000.000)", 20),
}
_TEMPLATE_ROWS = 1000  # rows that get the column formats and dropdowns


def build_template() -> bytes:
    """The XLSX a village fills in: a "Nominasi" sheet with an example row, and the categories."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = TEMPLATE_SHEET
    bold = Font(bold=True)
    sheet.append(list(_TEMPLATE_HEADERS))
    for index, (note, width) in enumerate(_TEMPLATE_HEADERS.values(), start=1):
        cell = sheet.cell(row=1, column=index)
        cell.font = bold
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
        cell.comment = Comment(note, "rentan")
        sheet.column_dimensions[cell.column_letter].width = width
    sheet.freeze_panes = "A2"

    sample = SAMPLE_ROW
    sheet.append(
        [
            sample.nik,
            sample.full_name,
            SAMPLE_BIRTH_DATE,  # a real date cell, shown as yyyy-mm-dd
            sample.gender,
            sample.category,
            sample.phone,
            SAMPLE_INCOME_IDR,
        ]
    )
    # Text format on NIK and phone: Excel keeps all 16 digits and the leading 0.
    formats = {"A": "@", "C": "yyyy-mm-dd", "F": "@", "G": "#,##0"}
    for letter, number_format in formats.items():
        sheet.column_dimensions[letter].number_format = number_format
        for row in range(2, _TEMPLATE_ROWS + 2):
            sheet[f"{letter}{row}"].number_format = number_format

    last = _TEMPLATE_ROWS + 1
    gender = DataValidation(type="list", formula1='"L,P"', allow_blank=True)
    gender.error = "Isi L (laki-laki) atau P (perempuan)"
    gender.errorTitle = "Jenis kelamin"
    gender.add(f"D2:D{last}")
    choices = ",".join(c.value for c in Category)  # a literal list: survives edits elsewhere
    category = DataValidation(type="list", formula1=f'"{choices}"', allow_blank=True)
    category.error = "Pilih salah satu kategori dari sheet Kategori"
    category.errorTitle = "Kategori"
    category.add(f"E2:E{last}")
    for validation in (gender, category):
        validation.showErrorMessage = True
        sheet.add_data_validation(validation)

    categories = workbook.create_sheet(CATEGORY_SHEET)
    categories.append(["category", "keterangan"])
    for member in Category:
        categories.append([member.value, CATEGORY_DESCRIPTIONS[member]])
    desa_only = ", ".join(c.value for c in Category if c in DESA_ONLY)
    notes = [
        f"Kelurahan tidak dapat menominasikan {desa_only}: kategori ini hanya ada di desa.",
        "Isi daftar di sheet Nominasi, satu pekerja per baris, mulai baris 2; hapus baris contoh.",
        "NIK diketik sebagai teks 16 angka; tanggal lahir YYYY-MM-DD; jenis kelamin L atau P.",
    ]
    categories.append([])
    for note in notes:
        categories.append([note])
    for cell in categories[1]:
        cell.font = bold
    categories.column_dimensions["A"].width = 18
    categories.column_dimensions["B"].width = 50

    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
