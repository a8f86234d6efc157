"""Reading nomination lists from CSV/XLSX uploads, and the Excel template
(services.spreadsheets)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import openpyxl
import pytest

from domain.categories import Category
from domain.regions import Village
from domain.worker_rows import ProgramRules, WorkerRow, validate_row
from services import spreadsheets
from services.spreadsheets import (
    MAX_BYTES,
    MAX_ROWS,
    UploadError,
    build_template,
    parse_nomination_file,
)

NIK = "1603015505850003"  # a woman born 15 May 1985
NIK_MAN = "1603011505850001"  # a man born 15 May 1985
HEADER = "nik,full_name,birth_date,gender,category,phone,declared_income_idr"


def csv_bytes(*lines: str, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def parse_csv(data: bytes) -> spreadsheets.ParsedList:
    return parse_nomination_file(data, filename="list.csv", content_type="text/csv")


def xlsx_bytes(*rows: list[object], title: str = "Sheet") -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def parse_xlsx(data: bytes) -> spreadsheets.ParsedList:
    return parse_nomination_file(data, filename="list.xlsx", content_type=None)


def upload_error(data: bytes, *, filename: str = "list.csv") -> UploadError:
    with pytest.raises(UploadError) as caught:
        parse_nomination_file(data, filename=filename, content_type=None)
    assert caught.value.field == "file"
    return caught.value


# --- CSV ----------------------------------------------------------------------------------------


def test_parse_csv_with_english_headers() -> None:
    data = csv_bytes(HEADER, f"{NIK},Siti Rahma,1985-05-15,P,guru_ngaji,081234567890,1000000")
    parsed = parse_csv(data)
    assert parsed.rows == [
        (
            2,
            WorkerRow(
                nik=NIK,
                full_name="Siti Rahma",
                birth_date="1985-05-15",
                gender="P",
                category="guru_ngaji",
                phone="081234567890",
                declared_income_idr="1000000",
            ),
        )
    ]
    assert parsed.warnings == []
    assert parsed.village_code is None


def test_parse_csv_with_indonesian_headers_and_dmy_dates() -> None:
    data = csv_bytes(
        "No. NIK,Nama Lengkap,Tgl Lahir,L/P,Jabatan,No HP,Penghasilan",
        f"{NIK},Siti Rahma,15/05/1985,Perempuan,Guru Ngaji,0812345678,1.500.000",
        f"{NIK_MAN},Ahmad Yani,15-05-1985,Laki-laki,Perangkat Desa,,",
    )
    parsed = parse_csv(data)
    (n1, siti), (n2, ahmad) = parsed.rows
    assert (n1, n2) == (2, 3)
    assert siti == WorkerRow(
        nik=NIK,
        full_name="Siti Rahma",
        birth_date="1985-05-15",
        gender="P",
        category="guru_ngaji",
        phone="0812345678",
        declared_income_idr="1.500.000",
    )
    assert (ahmad.birth_date, ahmad.gender, ahmad.category) == ("1985-05-15", "L", "perangkat_desa")
    assert (ahmad.phone, ahmad.declared_income_idr) == (None, None)
    assert parsed.warnings == []


def test_parse_csv_semicolon_separated_from_indonesian_excel() -> None:
    data = csv_bytes(
        "nik;nama;tanggal_lahir;jenis_kelamin;kategori",
        f"{NIK};Siti Aminah, S.Pd;15.05.1985;P;linmas",
    )
    ((_, row),) = parse_csv(data).rows
    assert (row.nik, row.full_name, row.birth_date) == (NIK, "Siti Aminah, S.Pd", "1985-05-15")


def test_parse_csv_with_utf8_bom() -> None:
    data = b"\xef\xbb\xbf" + csv_bytes(HEADER, f"{NIK},Siti Rahma,1985-05-15,P,guru_ngaji,,")
    parsed = parse_csv(data)
    assert parsed.rows[0][1].nik == NIK  # the BOM did not end up in the first header name
    assert parsed.warnings == []


def test_parse_csv_in_cp1252_reads_with_a_warning() -> None:
    data = csv_bytes(HEADER, f"{NIK},Renée Siti,1985-05-15,P,guru_ngaji,,", encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    parsed = parse_csv(data)
    assert parsed.rows[0][1].full_name == "Renée Siti"
    assert any("Windows-1252" in w for w in parsed.warnings)


def test_parse_csv_in_utf16_from_excel_unicode_text() -> None:
    text = (
        "nik\tfull_name\tbirth_date\tgender\tcategory\r\n" + f"{NIK}\tSiti\t1985-05-15\tP\tbpd\r\n"
    )
    parsed = parse_csv("\ufeff".encode("utf-16-le") + text.encode("utf-16-le"))
    assert parsed.rows[0][1].category == "bpd"


def test_parse_utf8_csv_does_not_warn_about_encoding() -> None:
    data = csv_bytes(HEADER, f"{NIK},Renée Siti,1985-05-15,P,guru_ngaji,,")
    parsed = parse_csv(data)
    assert parsed.rows[0][1].full_name == "Renée Siti"
    assert parsed.warnings == []


# --- unreadable files ---------------------------------------------------------------------------


def test_parse_empty_file_raises() -> None:
    assert "empty" in upload_error(b"").message
    assert "empty" in upload_error(b" \r\n\r\n").message


def test_parse_binary_garbage_raises() -> None:
    garbage = bytes((i * 73 + 41) % 256 for i in range(4096))
    assert "CSV" in upload_error(garbage).message


def test_parse_binary_garbage_without_nul_bytes_raises() -> None:
    garbage = bytes(b for b in range(1, 256)) * 8
    assert "CSV" in upload_error(garbage).message


def test_parse_broken_zip_starting_with_pk_raises() -> None:
    error = upload_error(b"PK\x03\x04" + b"\x00not really a zip" * 20, filename="list.csv")
    assert ".xlsx" in error.message


def test_parse_zip_that_is_not_a_workbook_raises() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    assert "Excel" in upload_error(buffer.getvalue(), filename="list.xlsx").message


def test_parse_xlsx_name_on_text_bytes_raises() -> None:
    assert ".xlsx" in upload_error(csv_bytes(HEADER), filename="list.xlsx").message


def test_parse_old_xls_format_raises_with_advice() -> None:
    error = upload_error(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, filename="a.xls")
    assert ".xls" in error.message and "CSV UTF-8" in error.message


def test_parse_xlsx_that_unpacks_too_large_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spreadsheets, "MAX_UNZIPPED_BYTES", 1000)
    data = xlsx_bytes(["nik", "full_name", "birth_date", "gender", "category"])
    assert "unpacks" in upload_error(data, filename="list.xlsx").message


def test_parse_file_larger_than_max_bytes_raises() -> None:
    data = csv_bytes(HEADER) + b"x" * MAX_BYTES
    assert "5 MiB" in upload_error(data).message


# --- headers ------------------------------------------------------------------------------------


def test_parse_missing_required_column_names_it() -> None:
    error = upload_error(csv_bytes("nik,nama,gender,category", f"{NIK},Siti,P,bpd"))
    assert "birth_date" in error.message
    assert "tanggal_lahir" in error.message  # the accepted names are listed
    assert "full_name" not in error.message.split("Accepted")[0]


def test_parse_missing_several_columns_names_each() -> None:
    error = upload_error(csv_bytes("nik,nama", f"{NIK},Siti"))
    for column in ("birth_date", "gender", "category"):
        assert column in error.message


def test_parse_unknown_column_warns_and_is_ignored() -> None:
    data = csv_bytes(
        "No,nik,full_name,birth_date,gender,category,Keterangan", f"1,{NIK},S,1985-05-15,P,bpd,x"
    )
    parsed = parse_csv(data)
    assert len(parsed.rows) == 1
    (warning,) = parsed.warnings
    assert "'No'" in warning and "'Keterangan'" in warning


def test_parse_two_columns_for_one_field_raises() -> None:
    error = upload_error(csv_bytes("nik,nama,nama_lengkap,birth_date,gender,category"))
    assert "'nama'" in error.message and "'nama_lengkap'" in error.message


def test_parse_header_below_a_title_keeps_sheet_row_numbers() -> None:
    data = csv_bytes(
        "DAFTAR NOMINASI DESA EMBAWANG",
        "",
        HEADER,
        f"{NIK},Siti,1985-05-15,P,bpd,,",
    )
    parsed = parse_csv(data)
    assert [n for n, _ in parsed.rows] == [4]
    assert any("above the header" in w for w in parsed.warnings)


def test_parse_header_only_raises() -> None:
    assert "no workers" in upload_error(csv_bytes(HEADER, ",,,,,,")).message


# --- rows ---------------------------------------------------------------------------------------


def test_parse_blank_rows_skipped_and_row_numbers_match_the_sheet() -> None:
    data = csv_bytes(
        HEADER,
        f"{NIK},Siti,1985-05-15,P,bpd,,",
        "",
        ",,,,,,",
        " , ,  ,,,,",
        f'{NIK_MAN},"Ahmad\nYani",1985-05-15,L,bpd,,',
        f"{NIK},Siti,1985-05-15,P,bpd,,",
    )
    parsed = parse_csv(data)
    assert [n for n, _ in parsed.rows] == [2, 6, 7]
    assert parsed.rows[1][1].full_name == "Ahmad\nYani"


def test_parse_rows_with_only_unknown_columns_are_skipped() -> None:
    data = csv_bytes(
        "No,nik,full_name,birth_date,gender,category", f"1,{NIK},S,1985-05-15,P,bpd", "2,,,,,"
    )
    assert [n for n, _ in parse_csv(data).rows] == [2]


def test_parse_max_rows_is_accepted() -> None:
    lines = [f"{NIK},Siti,1985-05-15,P,bpd,," for _ in range(MAX_ROWS)]
    assert len(parse_csv(csv_bytes(HEADER, *lines)).rows) == MAX_ROWS


def test_parse_more_than_max_rows_raises() -> None:
    lines = [f"{NIK},Siti,1985-05-15,P,bpd,," for _ in range(MAX_ROWS + 1)]
    assert str(MAX_ROWS) in upload_error(csv_bytes(HEADER, *lines)).message


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("L", "L"),
        ("p", "P"),
        ("Laki-laki", "L"),
        ("LAKI LAKI", "L"),
        ("perempuan", "P"),
        ("X", "X"),
    ],
)
def test_parse_normalises_gender(typed: str, expected: str) -> None:
    parsed = parse_csv(csv_bytes(HEADER, f"{NIK},Siti,1985-05-15,{typed},bpd,,"))
    assert parsed.rows[0][1].gender == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Perangkat Desa", "perangkat_desa"),
        ("Guru Ngaji", "guru_ngaji"),
        ("RT/RW", "rt_rw"),
        ("Petani Sawit", "petani_sawit"),
        (" KEPALA-DESA ", "kepala_desa"),
        ("BPD", "bpd"),
        ("Tukang Ojek", "Tukang Ojek"),
    ],
)
def test_parse_normalises_category(typed: str, expected: str) -> None:
    parsed = parse_csv(csv_bytes(HEADER, f"{NIK},Siti,1985-05-15,P,{typed},,"))
    assert parsed.rows[0][1].category == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1985-05-15", "1985-05-15"),
        ("15/05/1985", "1985-05-15"),
        ("15-05-1985", "1985-05-15"),
        ("5/5/1985", "1985-05-05"),
        ("31/02/1985", "31/02/1985"),  # not a day: validate_row reports it
        ("05/15/1985", "05/15/1985"),  # month first: not guessed
        ("15 Mei 1985", "15 Mei 1985"),
    ],
)
def test_parse_normalises_birth_date(typed: str, expected: str) -> None:
    parsed = parse_csv(csv_bytes(HEADER, f"{NIK},Siti,{typed},P,bpd,,"))
    assert parsed.rows[0][1].birth_date == expected


def test_parse_passes_sql_and_html_text_through_unchanged() -> None:
    names = ["Robert'); DROP TABLE enrollments;--", "<script>alert(1)</script>", "=1+1", "@SUM(A1)"]
    lines = [f'{NIK},"{name}",1985-05-15,P,bpd,,' for name in names]
    parsed = parse_csv(csv_bytes(HEADER, *lines))
    assert [row.full_name for _, row in parsed.rows] == names


def test_parse_csv_nik_in_scientific_notation_warns() -> None:
    parsed = parse_csv(csv_bytes(HEADER, "1.60302E+15,Siti,1985-05-15,P,bpd,,"))
    assert parsed.rows[0][1].nik == "1.60302E+15"
    assert any("1.60301E+15" in w and "row(s) 2" in w for w in parsed.warnings)


def test_parse_template_sample_row_left_in_warns() -> None:
    parsed = parse_csv(csv_bytes(HEADER, f"{NIK},Siti Aminah,1985-05-15,P,guru_ngaji,,"))
    assert any("row 2 is the template's example" in w for w in parsed.warnings)


# --- village code -------------------------------------------------------------------------------


def test_parse_single_village_code_is_returned() -> None:
    data = csv_bytes(
        "kode_desa,nik,full_name,birth_date,gender,category",
        f"16.03.01.2011,{NIK},Siti,1985-05-15,P,bpd",
        f"16.03.01.2011,{NIK_MAN},Ahmad,1985-05-15,L,bpd",
    )
    parsed = parse_csv(data)
    assert parsed.village_code == "16.03.01.2011"
    assert parsed.warnings == []


def test_parse_mixed_village_codes_raises_naming_rows() -> None:
    data = csv_bytes(
        "village_code,nik,full_name,birth_date,gender,category",
        f"16.03.01.2011,{NIK},Siti,1985-05-15,P,bpd",
        f"16.03.01.2012,{NIK_MAN},Ahmad,1985-05-15,L,bpd",
    )
    error = upload_error(data)
    assert "'16.03.01.2011' in row(s) 2" in error.message
    assert "'16.03.01.2012' in row(s) 3" in error.message


# --- XLSX ---------------------------------------------------------------------------------------


def test_parse_xlsx_numeric_nik_date_cell_and_formula_text() -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["NIK", "Nama", "Tanggal Lahir", "JK", "Kategori", "No HP", "Upah"])
    sheet.append(
        [1603011505850001, "Ahmad", dt.date(1985, 5, 15), "L", "Linmas", 81234567890, 1.5e6]
    )
    sheet.append([1.603015505850000e15, "Siti", dt.datetime(1985, 5, 15), "P", "bpd", None, None])
    cell = sheet.cell(row=4, column=2)
    cell.value = '=HYPERLINK("x")'
    cell.data_type = "s"  # stored as text, not as a formula
    sheet.cell(row=4, column=1, value=NIK)
    sheet.cell(row=4, column=3, value="15/05/1985")
    sheet.cell(row=4, column=4, value="P")
    sheet.cell(row=4, column=5, value="bpd")
    buffer = io.BytesIO()
    workbook.save(buffer)

    parsed = parse_xlsx(buffer.getvalue())

    (n2, ahmad), (n3, siti), (n4, formula) = parsed.rows
    assert (n2, n3, n4) == (2, 3, 4)
    assert ahmad.nik == "1603011505850001"
    assert ahmad.birth_date == "1985-05-15"
    assert ahmad.phone == "081234567890"
    assert ahmad.declared_income_idr == "1500000"
    assert ahmad.category == "linmas"
    assert siti.nik == "1603015505850000"  # passed through; validate_row judges it
    assert siti.birth_date == "1985-05-15"
    assert formula.full_name == '=HYPERLINK("x")'
    assert formula.birth_date == "1985-05-15"
    assert any("stored as a number" in w and "row(s) 2, 3" in w for w in parsed.warnings)
    assert any("leading 0" in w for w in parsed.warnings)


def test_parse_xlsx_formula_is_not_evaluated() -> None:
    data = xlsx_bytes(
        ["nik", "full_name", "birth_date", "gender", "category"],
        [NIK, "=1+1", "1985-05-15", "P", "bpd"],
    )
    ((_, row),) = parse_xlsx(data).rows
    assert row.full_name is None  # no cached value, and nothing computed it


def test_parse_xlsx_detected_by_magic_whatever_the_name() -> None:
    data = xlsx_bytes(
        ["nik", "nama", "tgl_lahir", "jk", "kategori"], [NIK, "Siti", "1985-05-15", "P", "bpd"]
    )
    parsed = parse_nomination_file(data, filename="daftar.csv", content_type="text/csv")
    assert parsed.rows[0][1].full_name == "Siti"


def test_parse_xlsx_reads_nominasi_sheet_even_when_another_is_active() -> None:
    workbook = openpyxl.Workbook()
    notes = workbook.active
    notes.title = "Catatan"
    notes.append(["just notes"])
    sheet = workbook.create_sheet("Nominasi")
    sheet.append(["nik", "full_name", "birth_date", "gender", "category"])
    sheet.append([NIK, "Siti", "1985-05-15", "P", "bpd"])
    workbook.active = 0
    buffer = io.BytesIO()
    workbook.save(buffer)
    parsed = parse_xlsx(buffer.getvalue())
    assert [(n, r.full_name) for n, r in parsed.rows] == [(2, "Siti")]


def test_parse_xlsx_blank_rows_keep_sheet_row_numbers() -> None:
    data = xlsx_bytes(
        ["nik", "full_name", "birth_date", "gender", "category"],
        [None, None, None, None, None],
        [NIK, "Siti", "1985-05-15", "P", "bpd"],
    )
    assert [n for n, _ in parse_xlsx(data).rows] == [3]


def test_parse_xlsx_numeric_village_code_gets_its_dots() -> None:
    data = xlsx_bytes(
        ["kode_desa", "nik", "full_name", "birth_date", "gender", "category"],
        [1603012011, NIK, "Siti", "1985-05-15", "P", "bpd"],
    )
    assert parse_xlsx(data).village_code == "16.03.01.2011"


# --- template -----------------------------------------------------------------------------------


def test_build_template_round_trips() -> None:
    parsed = parse_nomination_file(build_template(), filename="t.xlsx", content_type=None)
    ((number, row),) = parsed.rows
    assert number == 2
    assert row == WorkerRow(
        nik="1603015505850003",
        full_name="Siti Aminah",
        birth_date="1985-05-15",
        gender="P",
        category="guru_ngaji",
        phone="081234567890",
        declared_income_idr="1000000",
    )
    assert parsed.village_code is None


def test_build_template_sample_row_passes_validation() -> None:
    ((_, row),) = parse_xlsx(build_template()).rows
    village = Village("16.03.01.2011", "Embawang", "16.03.01", "Tanjung Agung", is_kelurahan=False)
    rules = ProgramRules(dt.date(2026, 1, 1), dt.date(2026, 12, 31), max_age=60)
    worker, errors = validate_row(row, village=village, rules=rules)
    assert errors == []
    assert worker is not None and worker.gender == "P"


def test_build_template_has_formats_dropdowns_and_categories() -> None:
    workbook = openpyxl.load_workbook(io.BytesIO(build_template()))
    assert workbook.sheetnames == ["Nominasi", "Kategori"]
    sheet = workbook["Nominasi"]
    header = [c.value for c in sheet[1]]
    assert header == [
        "nik",
        "full_name",
        "birth_date",
        "gender",
        "category",
        "phone",
        "declared_income_idr",
    ]
    assert sheet["A2"].number_format == "@" and sheet["A50"].number_format == "@"
    assert isinstance(sheet["C2"].value, dt.datetime) and sheet["C2"].number_format == "yyyy-mm-dd"
    lists = {str(v.sqref).split(":")[0]: v.formula1 for v in sheet.data_validations.dataValidation}
    assert lists["D2"] == '"L,P"'
    assert lists["E2"] == '"' + ",".join(c.value for c in Category) + '"'

    kategori = [row for row in workbook["Kategori"].iter_rows(values_only=True) if row[0]]
    described = {row[0]: row[1] for row in kategori[1:] if row[1]}
    assert set(described) == {c.value for c in Category}
    assert described["perangkat_desa"] == "Perangkat Desa (sekretaris, kaur, kasi, kadus)"
    note = " ".join(str(row[0]) for row in kategori if not row[1])
    assert "kelurahan" in note.lower()
    assert "kepala_desa, perangkat_desa, bpd" in note
