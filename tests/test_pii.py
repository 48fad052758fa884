import pytest

from pipeline.data.pii import PiiMasker, iban_valid, tckn_valid

VALID_TCKN = "10000000146"  # passes both check digits
VALID_IBAN = "TR330006100519786457841326"


def test_tckn_checksum():
    assert tckn_valid(VALID_TCKN) and tckn_valid("12345678950")
    assert not tckn_valid("12345678901") and not tckn_valid("01234567890") and not tckn_valid("1234567895")


def test_iban_mod97():
    assert iban_valid(VALID_IBAN) and iban_valid("TR33 0006 1005 1978 6457 8413 26")
    assert not iban_valid("TR330006100519786457841327") and not iban_valid("DE89370400440532013000")


@pytest.mark.parametrize("text, masked", [
    (f"TC kimlik no: {VALID_TCKN}.", "TC kimlik no: [TCKN]."),
    ("Sipariş no 12345678901 (checksum tutmuyor)", "Sipariş no 12345678901 (checksum tutmuyor)"),
    ("IBAN: TR33 0006 1005 1978 6457 8413 26 hesabına", "IBAN: [IBAN] hesabına"),
    (f"iban {VALID_IBAN.lower()}", "iban [IBAN]"),
    ("Yanlış IBAN TR33 0006 1005 1978 6457 8413 27", "Yanlış IBAN TR33 0006 1005 1978 6457 8413 27"),
    ("Ara: +90 532 123 45 67", "Ara: [TELEFON]"),
    ("Ara: +90 (532) 123-45-67!", "Ara: [TELEFON]!"),
    ("+905321234567 numarası", "[TELEFON] numarası"),
    ("0(532) 123 45 67 veya 0 (532) 123 45 67", "[TELEFON] veya [TELEFON]"),
    ("(0532) 123 45 67", "[TELEFON]"),
    ("05321234567'yi ara", "[TELEFON]'yi ara"),
    ("0532.123.45.67", "[TELEFON]"),
    ("Sabit hat 0212 345 67 89, Ankara 0312-345-6789", "Sabit hat [TELEFON], Ankara [TELEFON]"),
    ("Cep 532 123 45 67", "Cep [TELEFON]"),
    ("0090 532 123 45 67", "[TELEFON]"),
    ("Yazışma: çiftçi.ahmet+tarla@köy-koop.com.tr adresine", "Yazışma: [EPOSTA] adresine"),
    ("2023 yılında 1.250.000 ton, verim 450 kg/da", "2023 yılında 1.250.000 ton, verim 450 kg/da"),
    ("Parsel 123 456 78 90 hektar değil", "Parsel 123 456 78 90 hektar değil"),
])
def test_masking(text, masked):
    assert PiiMasker().mask(text) == masked


def test_counts_per_kind_and_custom_placeholders():
    masker = PiiMasker(["email", "phone"], {"email": "<e>", "phone": "<t>"})
    out = masker.mask(f"a@b.co, 0532 123 45 67, c@d.org, {VALID_TCKN}")
    assert out == f"<e>, <t>, <e>, {VALID_TCKN}"
    assert masker.counts == {"email": 2, "phone": 1}
