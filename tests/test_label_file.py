import json

import pytest

from scalp_ml.data.aihub.label_file import LabelError, parse_label

NAME = "0013_A2LEBJJDE00060O_1606386139601_3_TH"
SOURCE = "Training/02.라벨링데이터/[라벨]비듬_2.중등도.zip::[라벨]비듬_2.중등도/bad.json"


def label(**grades: object) -> dict:
    values = {f"value_{k}": "0" for k in range(1, 7)}
    values.update(grades)
    return {"image_file_name": f"{NAME}.jpg", **values}


def encoded(content: dict | str, encoding: str = "utf-8") -> bytes:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return text.encode(encoding)


def test_grades_may_be_ints_or_strings_and_a_bom_is_tolerated() -> None:
    parsed = parse_label(encoded(label(value_2=3, value_5=" 2"), "utf-8-sig"), "a.json")
    assert parsed.grades == (0, 3, 0, 0, 2, 0) and parsed.image_name == f"{NAME}.jpg"


def test_cp949_labels_with_korean_text_are_read() -> None:
    content = label(value_6=1) | {"condition": "탈모_1.경증"}
    assert parse_label(encoded(content, "cp949"), "a.json").grades == (0, 0, 0, 0, 0, 1)


def test_image_name_falls_back_to_the_label_file_stem_inside_an_archive() -> None:
    content = label()
    del content["image_file_name"]
    source = f"Training/[라벨]x.zip::[라벨]x/{NAME}.json"
    assert parse_label(encoded(content), source).image_name == f"{NAME}.jpg"


def test_a_windows_path_in_the_label_keeps_only_the_file_name() -> None:
    content = label() | {"image_file_name": f"C:\\data\\원천\\{NAME}.jpg"}
    assert parse_label(encoded(content), "a.json").image_name == f"{NAME}.jpg"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00\xd8garbage\x81", "not text in UTF-8 or CP949"),
        (b"[1, 2]", "expected a JSON object, found list"),
        (encoded({k: v for k, v in label().items() if k != "value_4"}), "missing key 'value_4'"),
        (encoded(label(value_3="4")), "'value_3' is 4, outside 0-3"),
        (encoded(label(value_3=-1)), "'value_3' is -1, outside 0-3"),
        (encoded(label(value_6="mild")), "'value_6' is 'mild', not an integer grade 0-3"),
        (encoded(label(value_1=1.5)), "'value_1' is 1.5, not an integer grade 0-3"),
        (encoded(label(value_2=True)), "'value_2' is True, not an integer grade 0-3"),
        (encoded(label(value_2="²")), "'value_2' is '²', not an integer grade 0-3"),
        (encoded(label(value_2="--1")), "'value_2' is '--1', not an integer grade 0-3"),
        (b'{"value_1": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
def test_bad_labels_name_the_file_and_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(LabelError, match=message) as error:
        parse_label(data, SOURCE)
    assert str(error.value).startswith(f"{SOURCE}: ")
