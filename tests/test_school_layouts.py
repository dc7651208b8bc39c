"""The template-free reader on school layouts: numbering styles, columns, footers, options lines,
brackets, two blanks; and a generated school paper read with no confident wrong verdict."""

from __future__ import annotations

import random
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from bench.handwriting import HAND_LATIN
from bench.school_papers import choose_hand, make_school_paper, write_by_hand
from client.samples import _font
from shared import ocr
from shared.grading.answer_key import AnswerKey, KeyQuestion
from shared.grading.offline import read_offline
from shared.grading.reader.fractions import read_stacked
from shared.grading.reader.layout import (
    Anchor,
    find_anchors,
    is_footer,
    is_heading,
    is_options_line,
    printed_number,
    question_line,
)
from shared.grading.reader.marking import as_digits, mark_reading
from shared.grading.reader.reading import (
    AnswerReading,
    _after_equals,
    _bracket_contents,
    _inserted_text,
    _margin,
    _place_in_line,
    _read_again,
    _weighed_letter,
    read_answers,
    remainder_apart,
)
from shared.grading.reader.scanning import PageScan, scan_page, scan_pages, upright_sheet
from shared.grading.reader.template import (
    _apart,
    _in_slots,
    blank_slots,
    own_writing,
    read_template,
    read_with_template,
    register,
    student_ink,
    with_faint,
    without_struck,
)
from shared.images import ink_mask


def line(text: str, box: tuple[int, int, int, int] = (100, 100, 400, 130)) -> ocr.TextLine:
    return ocr.TextLine(text=text, score=0.99, box=box)


def page_of(lines: list[ocr.TextLine], size: tuple[int, int] = (1240, 1754)) -> PageScan:
    """A blank page of `size` on which OCR read `lines`: for finding questions by their lines."""
    return PageScan(1, Image.new("L", size, 255), Image.new("L", size, 0), lines)


def test_a_question_numbered_within_its_section_is_found_by_its_printed_number():
    assert printed_number("2.3") == "3" and printed_number("12") == "12" and printed_number("2b") == "2b"


@pytest.mark.parametrize("text", ["第1页（共2页）", "- 1 -", "数学试卷 第2页 共2页", "1/2", "Page 1 of 2"])
def test_page_footers_are_print_at_the_foot_of_the_page(text):
    assert is_footer(line(text, (500, 1700, 700, 1730)), page_height=1754)
    assert not is_footer(line(text, (500, 800, 700, 830)), page_height=1754)  # mid-page: not a footer


def test_a_page_number_alone_and_a_marked_heading_are_print():
    assert is_footer(line("1", (610, 1700, 630, 1730)), page_height=1754, page_width=1240)  # '- 1 -' read '1'
    assert not is_footer(line("1", (120, 1700, 140, 1730)), page_height=1754, page_width=1240)  # at the margin
    assert not is_footer(line("1", (610, 900, 630, 930)), page_height=1754, page_width=1240)  # mid-page
    assert is_heading(line("■二、直接写出得数")) and not is_heading(line("（2）二、"))
    assert is_heading(line("1三、选一选（每题2分）")) and is_heading(line("四丶解决问题"))  # the mark read as 1
    assert not is_heading(line("1.三角形的内角和是（ ）")) and not is_heading(line("12、"))
    # the 、 read as another mark (a blank paper read '四~应用题': its question was never found)
    assert is_heading(line("四~应用题")) and is_heading(line("三，选择题"))
    assert not is_heading(line("三个十是（ ）。")) and not is_heading(line("十几减9"))
    # boxed with a character of the sealing line printed sideways beside it (its section's questions
    # were then looked for after the next heading, and none was found)
    assert is_heading(line("不二、填一填")) and is_heading(line("线 三、选一选"))


def test_a_question_number_with_the_sealing_lines_dash_read_before_it_is_found():
    # the dashed sealing line beside 第16题 read with it as '~': question 16 went unfound and 15 ran on
    lines = [
        line("第15题学校买了35套桌椅，每套150元，一共花了多少元？", (100, 100, 900, 130)),
        line("~第16题一个长方形花坛长10米，宽9米，它的周长是多少米？", (70, 400, 900, 430)),
    ]
    key = AnswerKey.model_validate(
        {"questions": [{"id": "15", "answer": "5250元", "points": 4}, {"id": "16", "answer": "38米", "points": 4}]}
    )
    anchors = find_anchors([page_of(lines)], key)
    assert set(anchors) == {"15", "16"} and anchors["16"].line is lines[1]
    assert find_anchors([page_of([line("~16.一个长方形花坛", (70, 400, 900, 430))])], key) == {}  # not 第16题


def test_a_reading_that_ran_on_into_the_next_question_is_never_sure():
    word = KeyQuestion.model_validate({"id": "15", "type": "word", "answer": "5250元", "points": 4})
    ran_on = (
        "150×35=5250（元） 答：5250元 ~第16题一个长方形花坛长10米，宽9米，它的周长是多少米？ (10+9)×2=38(米) 答：38"
    )
    for text in (ran_on, "150×35=5250（元） 答：5250元 第16题一个长方形花坛"):
        mark = mark_reading(AnswerReading("15", "read", text, 0.97, agreeing=3), word, "math", "zh")
        assert mark.confidence < 0.9, text  # the 答 compared may be question 16's: wrong or right, unsure
    alone = mark_reading(
        AnswerReading("15", "read", "150×35=5250（元） 答：5250元", 0.97, agreeing=3), word, "math", "zh"
    )
    assert alone.is_correct and alone.confidence >= 0.9
    twice = "150×35=5250（元） 答：5250元 (10+9)×2=38(米) 答：38"  # a second 答: line, its number unread
    assert mark_reading(AnswerReading("15", "read", twice, 0.97, agreeing=3), word, "math", "zh").confidence < 0.9


def test_a_decimal_read_without_its_point_and_a_digit_is_never_confidently_wrong():
    decimal = KeyQuestion.model_validate({"id": "3.1", "answer": "11.23", "points": 2})
    lost = mark_reading(AnswerReading("3.1", "read", "123", 0.97, agreeing=0), decimal, "math", "zh")
    assert not lost.is_correct and lost.confidence < 0.9  # 1123 with a 1 lost: as likely misread as written
    other = mark_reading(AnswerReading("3.1", "read", "12.3", 0.97, agreeing=0), decimal, "math", "zh")
    assert not other.is_correct and other.confidence >= 0.9  # its own point: another number, written


def test_a_blank_read_as_no_value_or_a_near_miss_is_never_confidently_wrong():
    key = KeyQuestion.model_validate(
        {
            "id": "4",
            "type": "blanks",
            "points": 2,
            "blanks": [{"answer": "20", "points": 1}, {"answer": "20", "points": 1}],
        }
    )
    heading = AnswerReading("4", "read", "■二、直接写出得数", 0.99, agreeing=3)
    assert mark_reading(heading, key, "math", "zh").confidence < 0.9
    near = AnswerReading("4", "read", "20；26", 0.95, agreeing=3)
    assert mark_reading(near, key, "math", "zh").confidence < 0.9
    right = AnswerReading("4", "read", "20；20", 0.95, agreeing=3)
    assert mark_reading(right, key, "math", "zh").confidence >= 0.9
    slashed = mark_reading(AnswerReading("4", "read", "20；/20", 0.95), key, "math", "zh")  # a 1 read as '/'
    assert not slashed.is_correct and slashed.confidence < 0.9


def test_a_fraction_or_decimal_read_without_its_bar_or_point_is_never_confidently_wrong():
    fraction = KeyQuestion.model_validate({"id": "4", "answer": "7/10", "points": 2})
    for said in ("7110", "710"):  # the bar read as a 1, or lost: every reading agreeing does not make it sure
        mark = mark_reading(AnswerReading("4", "read", said, 0.97, agreeing=4), fraction, "math", "zh")
        assert not mark.is_correct and mark.confidence < 0.9, said
    decimal = KeyQuestion.model_validate({"id": "5", "answer": "1.8", "points": 2})
    assert mark_reading(AnswerReading("5", "read", "18", 0.97, agreeing=4), decimal, "math", "zh").confidence < 0.9
    other = mark_reading(AnswerReading("4", "read", "3/10", 0.97, agreeing=4), fraction, "math", "zh")
    assert not other.is_correct and other.confidence >= 0.9  # a different fraction, read surely, is wrong surely
    times = KeyQuestion.model_validate(
        {
            "id": "6",
            "type": "blanks",
            "points": 2,
            "blanks": [{"answer": "7×6", "points": 1}, {"answer": "42", "points": 1}],
        }
    )
    assert mark_reading(AnswerReading("6", "read", "7x6；42", 0.97, agreeing=4), times, "math", "zh").is_correct


def test_a_sign_or_one_end_of_the_answer_lost_in_reading_is_never_confidently_wrong():
    blanks = KeyQuestion.model_validate(
        {
            "id": "9",
            "type": "blanks",
            "points": 2,
            "blanks": [{"answer": "-6", "points": 1}, {"answer": "3", "points": 1}],
        }
    )
    lost_minus = mark_reading(AnswerReading("9", "read", "6；3", 1.0, agreeing=4), blanks, "math", "zh")
    assert not lost_minus.is_correct and lost_minus.confidence < 0.9  # a minus is a short stroke, often lost
    other = mark_reading(AnswerReading("9", "read", "-4；3", 1.0, agreeing=4), blanks, "math", "zh")
    assert not other.is_correct and other.confidence >= 0.9
    single = KeyQuestion.model_validate({"id": "10", "answer": "-12", "points": 2})
    assert mark_reading(AnswerReading("10", "read", "12", 0.99, agreeing=4), single, "math", "zh").confidence < 0.9

    remainder = KeyQuestion.model_validate({"id": "11", "answer": "7……6", "points": 2})
    tail = AnswerReading("11", "read", "6", 0.95, agreeing=2, key_likelihood=7e-8)  # the 7 and the dots lost
    assert mark_reading(tail, remainder, "math", "zh").confidence < 0.9
    # every reading agreeing on the part: what was written (a pupil's dropped zero), not a misreading
    zeros = KeyQuestion.model_validate({"id": "12", "answer": "500", "points": 2})
    said = AnswerReading("12", "read", "50", 0.99, agreeing=4, key_likelihood=4e-4)
    assert mark_reading(said, zeros, "math", "zh").confidence >= 0.9


def test_a_unit_the_reader_could_not_make_out_is_not_a_sure_missing_unit():
    word = KeyQuestion.model_validate({"id": "4.3", "type": "word", "answer": "145千米", "points": 4})
    unread = AnswerReading("4.3", "read", "7.5×2=145（干米）\n答：145干米", 0.95, agreeing=3)  # 千 read 干
    marked = mark_reading(unread, word, "math", "zh")
    assert not marked.is_correct and marked.confidence < 0.9
    for left_out in ("7.5×2=145\n答：145", "答：145米"):  # a unit left out, or another unit written
        other = mark_reading(AnswerReading("4.3", "read", left_out, 0.95, agreeing=3), word, "math", "zh")
        assert not other.is_correct and other.error_type in ("unit", "calculation")
    bare = mark_reading(AnswerReading("4.3", "read", "7.5×2=145\n答：145", 0.95, agreeing=3), word, "math", "zh")
    assert bare.error_type == "unit" and bare.confidence >= 0.9
    assert mark_reading(AnswerReading("4.3", "read", "答：145千米", 0.95, agreeing=3), word, "math", "zh").is_correct


@pytest.mark.parametrize("prompt", ["4+____=10", "4+（ ）=10"])
def test_nothing_read_in_a_blank_inside_the_line_is_not_a_sure_blank(prompt):
    # The recogniser drops a digit written on the blank's line ("4+____=10" read with the 6 lost):
    # without a template that is not told apart from an empty blank, so a teacher looks.
    key = AnswerKey.model_validate(
        {
            "questions": [
                {"id": "1", "answer": "6", "prompt": prompt, "points": 1},
                {"id": "2", "answer": "1", "points": 1},
            ]
        }
    )
    page = page_of([line("1. " + prompt, (100, 100, 400, 130)), line("2. x=", (100, 300, 160, 330))])
    reading = read_answers([page], key)["1"]
    assert reading.state == "blank" and reading.confidence < 0.9
    plain = key.model_copy(
        update={"questions": [key.questions[0].model_copy(update={"prompt": "算一算：4+6"}), key.questions[1]]}
    )
    assert (
        read_answers([page_of([line("1. 算一算：4+6"), line("2. x=", (100, 300, 160, 330))])], plain)["1"].confidence
        >= 0.9
    )


def test_a_mark_beyond_the_print_or_the_keys_answer_before_the_equals_is_not_a_sure_verdict():
    # A written 1 read as a bracket (`tan45°=)`) is no answer, but the line is not empty either.
    key = AnswerKey.model_validate(
        {
            "questions": [
                {"id": "1", "answer": "1", "prompt": "tan45°=", "points": 1},
                {"id": "2", "answer": "1", "points": 1},
            ]
        }
    )
    second = line("2. x=", (100, 300, 160, 330))
    reading = read_answers([page_of([line("1. tan45°=)"), second])], key)["1"]
    assert reading.state == "blank" and reading.confidence < 0.9 and "')'" in reading.note
    assert read_answers([page_of([line("1. tan45°="), second])], key)["1"].confidence >= 0.9  # nothing more
    # Without a prompt, `6+4=10` with the key 4, or `6+=10` (a 4 between them unread): the answer
    # may be written in a blank the recogniser did not see, and the 10 print.
    bare = AnswerKey.model_validate(
        {"questions": [{"id": "1", "answer": "4", "points": 1}, {"id": "2", "answer": "1", "points": 1}]}
    )
    unread = read_answers(
        [page_of([line("1. 6+", (100, 100, 200, 130)), line("=10", (260, 100, 320, 130)), second])], bare
    )
    for reading in (read_answers([page_of([line("1. 6+4=10"), second])], bare)["1"], unread["1"]):
        assert reading.text == "10" and reading.confidence < 0.9 and "may stand before it" in reading.note
        assert mark_reading(reading, bare.questions[0], "math", "zh").confidence < 0.9
    for read in ("1. 14+3=10", "1. 6+3=10", "1. 3x=10"):  # the key inside a number, or not there; algebra
        assert "before it" not in read_answers([page_of([line(read), second])], bare)["1"].note


def test_a_one_lost_or_found_is_never_a_sure_mistake_however_many_readings_agree():
    blanks = KeyQuestion.model_validate(
        {"id": "1", "type": "blanks", "blanks": [{"answer": "±17", "points": 1}, {"answer": "17", "points": 1}]}
    )
    lost = AnswerReading("1", "read", "±7；17", 0.98, agreeing=4)  # the 1 joined to ± and lost, every way
    assert mark_reading(lost, blanks, "math", "zh").confidence < 0.9
    number = KeyQuestion.model_validate({"id": "2", "answer": "12", "points": 1})
    for said in ("2", "112"):
        assert mark_reading(AnswerReading("2", "read", said, 0.98, agreeing=4), number, "math", "zh").confidence < 0.9
    assert mark_reading(AnswerReading("2", "read", "13", 0.98, agreeing=4), number, "math", "zh").confidence >= 0.9


def test_a_right_answer_is_not_sure_where_the_recogniser_weighs_a_minus_before_it():
    number = KeyQuestion.model_validate({"id": "5", "answer": "24", "points": 2})
    read = AnswerReading("5", "read", "24", 0.86, agreeing=3, key_likelihood=0.6, minus_odds=0.07)  # "-24" written
    assert mark_reading(read, number, "math", "zh").is_correct
    assert mark_reading(read, number, "math", "zh").confidence < 0.9
    assert mark_reading(replace(read, minus_odds=0.005), number, "math", "zh").confidence >= 0.9
    assert mark_reading(replace(read, minus_odds=None), number, "math", "zh").confidence >= 0.9
    word = KeyQuestion.model_validate({"id": "6", "type": "word", "answer": "5160元", "points": 3})
    sentence = AnswerReading("6", "read", "一共花了5160元", 0.99, agreeing=4, minus_odds=2.5)  # 一 is no minus
    assert mark_reading(sentence, word, "math", "zh").confidence >= 0.9


def test_other_digits_are_surely_wrong_only_where_the_recogniser_gives_the_key_no_chance():
    word = KeyQuestion.model_validate({"id": "7", "type": "word", "answer": "2700元", "points": 3})
    said = AnswerReading("7", "read", "2800元", 0.99, agreeing=3)  # 8 for 7: a digit the reader confuses
    assert mark_reading(said, word, "math", "zh").confidence < 0.9
    weighed = replace(said, key_likelihood=2e-8)  # the recogniser gives 2700元 no chance in the writing
    assert mark_reading(weighed, word, "math", "zh").confidence >= 0.9
    assert mark_reading(replace(said, key_likelihood=0.05), word, "math", "zh").confidence < 0.9
    unsure = replace(said, confidence=0.85, key_likelihood=2e-8)  # three readings of other digits, scored low
    assert mark_reading(unsure, word, "math", "zh").confidence >= 0.9
    assert mark_reading(replace(unsure, agreeing=2), word, "math", "zh").confidence < 0.9
    percent = KeyQuestion.model_validate({"id": "8", "answer": "20%", "points": 2})
    lost = AnswerReading("8", "read", "20", 0.99, agreeing=3, key_likelihood=1e-9)  # the % lost, not weighed
    assert mark_reading(lost, percent, "math", "zh").confidence < 0.9
    fraction = KeyQuestion.model_validate({"id": "9", "answer": "11/30", "points": 2})
    moved = AnswerReading("9", "read", "1/130", 0.95, agreeing=2)  # the bar read one digit early
    assert mark_reading(moved, fraction, "math", "zh").confidence >= 0.9  # nothing says it is the key
    assert mark_reading(replace(moved, key_likelihood=0.04), fraction, "math", "zh").confidence < 0.9
    # a zero left out (4 for 40): sure only where three readings agree and the key has no chance
    forty = KeyQuestion.model_validate({"id": "10", "answer": "40", "points": 2})
    four = AnswerReading("10", "read", "4", 0.99, agreeing=3, key_likelihood=2e-4)
    assert mark_reading(four, forty, "math", "zh").confidence >= 0.9
    assert mark_reading(replace(four, agreeing=2), forty, "math", "zh").confidence < 0.9
    assert mark_reading(replace(four, key_likelihood=0.03), forty, "math", "zh").confidence < 0.9
    assert mark_reading(replace(four, key_likelihood=None), forty, "math", "zh").confidence < 0.9


def found_rows(rows: list[ocr.TextLine], ids: list[str], sections: bool = False) -> dict[str, str]:
    """Which row each question of a key of `ids` is found at on a page of `rows` (its text); with
    `sections`, the key names each question's section."""
    questions = [
        {"id": qid, "answer": "1", "points": 1} | ({"section": f"part {qid[0]}"} if sections else {}) for qid in ids
    ]
    key = AnswerKey.model_validate({"questions": questions})
    return {qid: anchor.line.text for qid, anchor in find_anchors([page_of(rows)], key).items()}


def test_the_papers_first_question_unread_is_not_taken_from_a_later_section():
    rows = [
        line("一、填空题", (80, 416, 275, 458)),
        line("1-6的相反数是（6", (117, 501, 486, 531)),  # its ① read as a 1 run into the text
        line("②1-8l= (", (115, 589, 270, 628)),
        line("③0.2的倒数是（", (119, 682, 395, 714)),
        line("二、选择题", (80, 1138, 275, 1181)),
        line("①-2的相反数是（B）", (115, 1218, 486, 1257)),
        line("②圆的半径扩大到原来的2倍，面积扩大到原来的（A）倍。", (113, 1376, 1016, 1423)),
    ]
    found = found_rows(rows, ["1.1", "1.2", "1.3", "2.1", "2.2"])
    assert found.get("1.1") != "①-2的相反数是（B）"
    assert (found["1.2"], found["1.3"]) == ("②1-8l= (", "③0.2的倒数是（")
    assert (found["2.1"], found["2.2"]) == ("①-2的相反数是（B）", "②圆的半径扩大到原来的2倍，面积扩大到原来的（A）倍。")


def test_a_sections_first_question_unread_is_not_taken_from_the_next_section():
    rows = [
        line("一、计算题", (80, 250, 300, 290)),
        line("(1）6+4=10", (100, 340, 300, 380)),
        line("二、填空题", (80, 600, 300, 640)),
        line("38里面有（ ）个十", (170, 680, 500, 720)),  # its (1) not read
        line("(2）2+（8）=10", (100, 770, 400, 810)),
        line("三、选择题", (80, 1150, 300, 1190)),
        line("（1）比9大4的数是（D）", (100, 1230, 520, 1270)),
        line("(2）3时是（B）", (100, 1400, 520, 1440)),
    ]
    ids = ["1.1", "2.1", "2.2", "3.1", "3.2"]
    found = found_rows(rows, ids)
    assert found["2.2"] == "(2）2+（8）=10" and found["3.1"] == "（1）比9大4的数是（D）"
    assert found.get("2.1") != "（1）比9大4的数是（D）"
    # sections named in the key count alike
    found = found_rows(rows, ids, sections=True)
    assert found["3.1"] == "（1）比9大4的数是（D）" and found.get("2.1") != "（1）比9大4的数是（D）"
    # nor is a section's (2), unread, taken from the next section: it is found between its neighbours
    rows = [
        line("一、选一选", (80, 250, 300, 290)),
        line("①边长6厘米的正方形，周长是（", (116, 340, 569, 380)),
        line("2", (124, 440, 144, 460)),  # ② read as a 2 apart from its row
        line("三角形的内角和是（", (150, 432, 430, 468)),
        line("③7千克=（", (115, 540, 279, 580)),
        line("二、直接写出得数", (80, 650, 378, 690)),
        line("① 160x17=", (114, 740, 277, 780)),
        line("② 224x30=", (741, 740, 905, 780)),
    ]
    found = found_rows(rows, ["1.1", "1.2", "1.3", "2.1", "2.2"])
    assert found["1.3"] == "③7千克=（" and found["2.2"] == "② 224x30="
    assert found.get("1.2") in (None, "2", "三角形的内角和是（")


def test_a_circled_number_boxed_with_tall_writing_still_starts_its_row():
    rows = [
        line("一、口算", (80, 250, 300, 290)),
        line("① 67-37= 4 0", (80, 347, 305, 412)),
        line("② 55+29=", (743, 361, 891, 399)),
        line("③17-8=", (85, 457, 211, 492)),
        line("④ 21+20-19=", (743, 459, 930, 490)),
        line("③ 86-18=", (84, 540, 229, 589)),  # ⑤ read as ③
        line("③ 63+16= 79", (737, 538, 949, 594)),  # ⑥ read as ③
        line(" 68+17=", (85, 638, 233, 677)),  # ⑦ lost
        line("③ 5x8= 40", (730, 607, 957, 690)),  # ⑧ read as ③, boxed with the tall answer beside it
        line("二、选择题", (82, 800, 280, 840)),
        line("①3x3=( A )", (82, 900, 328, 950)),
    ]
    found = found_rows(rows, [f"1.{n}" for n in range(1, 9)] + ["2.1"])
    assert [found.get(f"1.{n}") for n in range(5, 9)] == ["③ 86-18=", "③ 63+16= 79", " 68+17=", "③ 5x8= 40"]


def test_questions_whose_circled_numbers_are_misread_are_found_between_their_neighbours():
    """OCR reads ⑤ as ③, drops ⑥ and reads ⑦ as ①: found by the rows that begin their column,
    between ④ and the next section's heading (the ① after it is section 2's, not section 1's)."""
    rows = [
        line("一、填空题（每题2分）", (96, 254, 522, 288)),
        line("①7x", (98, 329, 175, 362)),
        line("②7个6相加，写成乘法算式是", (102, 414, 478, 446)),
        line("③3米=", (97, 494, 204, 535)),
        line("④3分=", (98, 581, 204, 620)),
        line("③2千克=", (98, 667, 231, 705)),
        line("第9题 一个长方形长7厘米，宽4厘米，周长是", (102, 753, 618, 786)),  # ⑥ printed 第6题, read 第9题
        line("①7吨=", (99, 837, 203, 873)),
        line("二、选一选（每题2分）", (88, 927, 957, 965)),
        line("①边长7厘米的正方形，周长是（", (100, 1002, 515, 1036)),
        line("A.28", (133, 1071, 200, 1105)),
        line("B.11", (361, 1071, 424, 1105)),
        line("②6千克=（", (100, 1153, 254, 1193)),
    ]
    page = page_of(rows)
    ids = [f"1.{n}" for n in range(1, 8)] + ["2.1", "2.2"]
    key = AnswerKey.model_validate({"questions": [{"id": qid, "answer": "1", "points": 1} for qid in ids]})
    found = {qid: anchor.line.text for qid, anchor in find_anchors([page], key).items()}
    assert found == {
        "1.1": "①7x", "1.2": "②7个6相加，写成乘法算式是", "1.3": "③3米=", "1.4": "④3分=", "1.5": "③2千克=",
        "1.6": "第9题 一个长方形长7厘米，宽4厘米，周长是", "1.7": "①7吨=", "2.1": "①边长7厘米的正方形，周长是（",
        "2.2": "②6千克=（",
    }  # fmt: skip
    # what follows a label found so is the question's text: the label never enters an answer read in the line
    assert find_anchors([page], key)["1.6"].rest.strip() == "一个长方形长7厘米,宽4厘米,周长是"  # as normalised
    # one row more than questions missing: no guess
    extra = [*rows[:7], line("3×4=12", (99, 800, 230, 830)), *rows[7:]]
    page = PageScan(1, page.image, page.ink, extra)
    assert "1.5" not in find_anchors([page], key) and "2.1" in find_anchors([page], key)


def test_numbers_read_with_a_full_stop_glued_or_boxed_from_inside_are_found():
    """OCR lines of generated blank papers: "9。" (an ideographic full stop) is a number; ⑤ and ⑦
    read as a digit glued to the prompt ("57x", "742+16-10="), ⑧ read as "）" and boxed 21 px right
    of its column: found between their neighbours, in reading order, prompts compared without the
    glued digit."""
    full_stop = [
        line("8．袋中有2个红球、3个白球，任意摸一个，摸到红球的概率是", (228, 1396, 1162, 1430)),
        line("9。方程x2-5x+6=0的两根为x=（", (226, 1593, 711, 1637)),
        line("10。一元二次方程x2=81的解是（", (228, 1738, 714, 1769)),
    ]
    page = page_of(full_stop, (1414, 2000))
    key = AnswerKey.model_validate({"questions": [{"id": q, "answer": "1", "points": 1} for q in ("8", "9", "10")]})
    assert set(find_anchors([page], key)) == {"8", "9", "10"}

    rows = [
        line("三、计算题（每题2分，共16分）", (91, 100, 511, 135)),
        line("③16-7=", (100, 219, 216, 250)),
        line("④14-9=", (651, 218, 767, 252)),
        line(" 25+5=", (98, 301, 216, 336)),
        line("28÷7=", (650, 301, 767, 336)),
        line("742+16-10=", (99, 385, 272, 418)),
        line("）10+70=", (672, 385, 779, 419)),
        line("57x", (97, 470, 175, 507)),
        line("=56", (271, 473, 324, 504)),
        line("四、解决问题（共14分)", (92, 564, 409, 606)),
        line("①每盒有5支笔，买了9盒，一共有多少支笔？", (102, 644, 686, 675)),
    ]
    page = page_of(rows)
    prompts = {"3.3": "16-7=", "3.4": "14-9=", "3.5": "25+5=", "3.6": "28÷7=", "3.7": "42+16-10=",
               "3.8": "10+70=", "3.9": "7×____=56", "4.1": "每盒有5支笔，买了9盒，一共有多少支笔？"}  # fmt: skip
    key = AnswerKey.model_validate(
        {"questions": [{"id": q, "answer": "1", "points": 1, "prompt": p} for q, p in prompts.items()]}
    )
    found = {qid: anchor.line.text for qid, anchor in find_anchors([page], key).items()}
    assert found == {
        "3.3": "③16-7=", "3.4": "④14-9=", "3.5": " 25+5=", "3.6": "28÷7=", "3.7": "742+16-10=",
        "3.8": "）10+70=", "3.9": "57x", "4.1": "①每盒有5支笔，买了9盒，一共有多少支笔？",
    }  # fmt: skip


def _glyphs(draw: ImageDraw.ImageDraw, x: int, top: int, count: int) -> None:
    """Round handwritten-looking glyphs, 30 px tall, a few px apart."""
    for n in range(count):
        draw.ellipse((x + 26 * n, top, x + 26 * n + 20, top + 30), outline=255, width=4)


def test_a_struck_through_try_is_left_out_and_fractions_and_underlines_are_kept():
    mask = Image.new("L", (600, 160), 0)
    draw = ImageDraw.Draw(mask)
    _glyphs(draw, 40, 40, 3)  # the first try, struck through its middle
    draw.line((30, 57, 128, 53), fill=255, width=4)
    _glyphs(draw, 200, 40, 2)  # the final answer
    kept, struck = without_struck(mask, line_height=32)
    assert struck == 1
    assert np.asarray(kept)[:, :140].max() == 0 and np.asarray(kept)[:, 200:260].max() == 255
    # a quick stroke thins out: the line broken in three places, 4 px each, is still a strike
    broken = mask.copy()
    ImageDraw.Draw(broken).rectangle((0, 0, 600, 160), fill=0)
    _glyphs(ImageDraw.Draw(broken), 40, 40, 3)
    for x0, x1 in ((30, 50), (55, 82), (87, 108), (113, 128)):
        ImageDraw.Draw(broken).line((x0, 56, x1, 55), fill=255, width=2)
    _glyphs(ImageDraw.Draw(broken), 200, 40, 2)
    kept, struck = without_struck(broken, line_height=32)
    assert struck == 1 and np.asarray(kept)[:, :140].max() == 0

    fraction = Image.new("L", (600, 160), 0)
    draw = ImageDraw.Draw(fraction)
    _glyphs(draw, 40, 20, 2)  # numerator, bar, denominator: nothing crosses the bar
    draw.line((34, 60, 96, 60), fill=255, width=4)
    _glyphs(draw, 40, 68, 2)
    draw.line((200, 72, 300, 72), fill=255, width=4)  # an underline at the foot of an answer it touches
    _glyphs(draw, 204, 40, 4)
    assert without_struck(fraction, line_height=32) == (fraction, 0)


def _row(*marks: tuple[str, tuple[int, ...]]) -> Image.Image:
    """A mask (white ink) with ellipses ("o": a round glyph), lines ("-") and boxes ("[]") drawn."""
    mask = Image.new("L", (600, 160), 0)
    draw = ImageDraw.Draw(mask)
    for kind, box in marks:
        {"o": draw.ellipse, "[]": draw.rectangle}.get(kind, draw.line)(
            box, **({"fill": 255} if kind == "-" else {"outline": 255}), width=4
        )  # type: ignore[operator]
    return mask


def test_a_one_character_try_struck_with_a_short_line_is_left_out_where_short_strikes_apply():
    struck = _row(
        ("o", (40, 40, 60, 70)), ("-", (30, 56, 70, 54)), ("o", (100, 40, 120, 70)), ("o", (126, 40, 146, 70))
    )
    kept, count = without_struck(struck, 32, short=True)
    assert count == 1
    assert np.asarray(kept)[:, :80].max() == 0 and np.asarray(kept)[:, 100:150].max() == 255
    assert without_struck(struck, 32) == (struck, 0)  # not where they do not apply (a + is a struck 1)
    # the same line with nothing after it (no final answer), or with writing before it (inside the
    # answer), or over working in rows below; a box's middle stroke (周) that stops at its sides;
    # a minus before a digit, crossing no character; a 7's top bar; a character as wide as a line
    # (a 本's stroke run out past it): none is a struck try
    for marks in (
        (("o", (40, 40, 60, 70)), ("-", (30, 56, 70, 54))),
        (("o", (4, 40, 24, 70)), ("o", (40, 40, 60, 70)), ("-", (30, 56, 70, 54)), ("o", (100, 40, 120, 70))),
        (("o", (40, 40, 60, 70)), ("-", (30, 56, 70, 54)), ("o", (100, 40, 120, 70)), ("o", (40, 100, 60, 130))),
        (("[]", (40, 40, 72, 72)), ("-", (42, 56, 70, 56)), ("o", (100, 40, 120, 70))),
        (("-", (30, 56, 56, 56)), ("o", (62, 40, 82, 70)), ("o", (88, 40, 108, 70))),
        (("-", (34, 46, 66, 46)), ("-", (62, 46, 44, 74)), ("o", (100, 40, 120, 70))),  # a 7's bar, run out
        (("[]", (30, 40, 66, 72)), ("-", (25, 56, 70, 56)), ("o", (100, 40, 120, 70))),  # a line wide: 本, not a digit
    ):
        mask = _row(*marks)
        assert without_struck(mask, 32, short=True)[1] == 0, marks


def test_a_try_struck_through_with_a_thin_light_line_is_found_in_the_region_before_its_specks_go():
    region = Image.new("L", (600, 160), 255)  # the region as written: dark writing, a 1 px pencil line
    draw = ImageDraw.Draw(region)
    for n in range(3):
        draw.ellipse((40 + 26 * n, 40, 60 + 26 * n, 70), outline=40, width=4)  # the first try
    draw.line((30, 55, 130, 55), fill=150, width=1)  # a quick light line, 1 px: the speck filter takes it
    for n in range(2):
        draw.ellipse((200 + 26 * n, 40, 220 + 26 * n, 70), outline=40, width=4)  # the final answer
    mask = student_ink(ink_mask(region), line_height=32)
    assert np.asarray(mask)[30:80, 30:130].max() == 255 and without_struck(mask, 32)[1] == 0  # the line is gone
    kept, struck = without_struck(mask, line_height=32, region=region)
    assert struck == 1
    assert np.asarray(kept)[:, :140].max() == 0 and np.asarray(kept)[:, 200:260].max() == 255
    # the same thin line under the writing's foot, or across one character, strikes nothing
    foot = Image.new("L", (600, 160), 255)
    draw = ImageDraw.Draw(foot)
    for n in range(3):
        draw.ellipse((40 + 26 * n, 40, 60 + 26 * n, 70), outline=40, width=4)
    draw.line((30, 72, 130, 72), fill=150, width=1)
    assert without_struck(student_ink(ink_mask(foot), 32), 32, foot)[1] == 0


def test_a_strike_is_followed_to_its_ends_and_runs_out_under_a_characters_flag():
    # the line starts left of the try under the flag of its first character (a 1's lead-in, 13 px
    # above the line: within half a line, clear of a third) and ends inside its last character
    region = Image.new("L", (600, 160), 255)
    draw = ImageDraw.Draw(region)
    draw.line((40, 70, 40, 40), fill=40, width=4)  # 1
    draw.line((14, 42, 40, 40), fill=40, width=3)  # its flag, out over the line's start
    for n in range(1, 3):
        draw.ellipse((26 + 26 * n, 40, 46 + 26 * n, 70), outline=40, width=4)
    draw.line((20, 55, 94, 55), fill=40, width=4)  # the strike, from under the flag into the last 0
    for n in range(2):
        draw.ellipse((200 + 26 * n, 40, 220 + 26 * n, 70), outline=40, width=4)  # the final answer
    kept, struck = without_struck(student_ink(ink_mask(region), 32), 32, region)
    assert struck == 1
    assert np.asarray(kept)[:, :110].max() == 0 and np.asarray(kept)[:, 200:250].max() == 255


def test_a_light_pencil_strokes_pale_stretches_join_its_ink_and_a_pens_edges_or_a_shadow_do_not():
    pencil = Image.new("L", (300, 100), 255)
    draw = ImageDraw.Draw(pencil)
    draw.line((40, 20, 40, 80), fill=180, width=3)  # a pencil 1, its middle pale where the lead skipped
    draw.line((40, 45, 40, 58), fill=226, width=3)
    draw.rectangle((200, 40, 202, 42), fill=226)  # a pale speck touching no stroke
    mask = ink_mask(pencil)
    assert np.asarray(mask)[45:58, 40].max() == 0  # the ink mask alone breaks the 1 in two
    grown = np.asarray(with_faint(pencil, mask))
    assert grown[45:58, 40].min() == 255 and grown[38:46, 196:206].max() == 0
    assert grown.sum() < 1.5 * np.asarray(mask).sum()
    # a pen's dark stroke keeps its mask: its soft edges would join strokes that do not touch
    pen = Image.new("L", (300, 100), 255)
    ImageDraw.Draw(pen).line((40, 20, 40, 80), fill=40, width=3)
    ImageDraw.Draw(pen).line((43, 20, 43, 80), fill=226, width=1)
    assert with_faint(pen, ink_mask(pen)) is not None and np.array_equal(
        np.asarray(with_faint(pen, ink_mask(pen))), np.asarray(ink_mask(pen))
    )
    # pencil writing in a shadow's faint patch: the patch would outgrow the writing, nothing is grown
    shadowed = pencil.copy()
    ImageDraw.Draw(shadowed).rectangle((0, 0, 140, 100), fill=228)
    ImageDraw.Draw(shadowed).line((40, 20, 40, 80), fill=180, width=3)
    assert np.array_equal(np.asarray(with_faint(shadowed, ink_mask(shadowed))), np.asarray(ink_mask(shadowed)))
    assert np.array_equal(np.asarray(with_faint(shadowed, ink_mask(shadowed), 32)), np.asarray(ink_mask(shadowed)))
    # a character so light that a few of its pixels are ink is grown whole, within a line's square
    light = Image.new("L", (300, 100), 255)
    ImageDraw.Draw(light).arc((30, 30, 70, 80), 0, 360, fill=222, width=2)
    ImageDraw.Draw(light).rectangle((30, 52, 33, 56), fill=190)
    few = ink_mask(light)
    assert 0 < np.count_nonzero(np.asarray(few)) < 20
    whole = np.count_nonzero(np.asarray(with_faint(light, few, 32)))
    assert whole > 5 * np.count_nonzero(np.asarray(few)) and whole < 600


def test_a_remainders_numbers_are_read_again_apart_from_its_dots():
    rng = random.Random(1)
    written = write_by_hand("7……2", choose_hand(rng, "scan"), 40, rng)
    writing = Image.new("L", (written.bbox[2] - written.bbox[0] + 20, written.bbox[3] - written.bbox[1] + 20), 255)
    writing.paste(ImageOps.invert(written.mask.crop(written.bbox)), (10, 10))
    box = ink_mask(writing).getbbox()
    image, mask = writing.crop(box), ink_mask(writing).crop(box)
    assert ocr.recognise(image)[1] < 0.9  # the dots drag the whole reading's score down
    assert remainder_apart("7……2", image, mask) >= 0.9  # 7 and 2, each read alone
    assert remainder_apart("7……3", image, mask) is None and remainder_apart("72", image, mask) is None


def test_level_strokes_of_the_writing_and_a_fractions_bar_are_no_strike():
    # 5 5 written with long level tops joined into one stroke, and 一: level ink, but no line run out
    # past the writing through the characters' middle
    region = Image.new("L", (600, 160), 255)
    draw = ImageDraw.Draw(region)
    draw.line((40, 42, 140, 42), fill=40, width=4)  # the tops, one stroke
    for x in (40, 90):
        draw.arc((x, 52, x + 44, 86), 270, 180, fill=40, width=4)
        draw.line((x, 42, x, 62), fill=40, width=4)
    draw.line((200, 60, 260, 60), fill=40, width=4)  # 一
    mask = student_ink(ink_mask(region), 32)
    assert without_struck(mask, 32, region)[1] == 0
    # a stacked fraction's long bar, its rows close above and below: not a strike, though it runs out
    fraction = Image.new("L", (600, 160), 255)
    draw = ImageDraw.Draw(fraction)
    for x in (50, 76):
        draw.ellipse((x, 26, x + 20, 56), outline=40, width=4)  # the numerator
        draw.ellipse((x, 66, x + 20, 96), outline=40, width=4)  # the denominator
    draw.line((30, 61, 130, 61), fill=120, width=2)
    assert without_struck(student_ink(ink_mask(fraction), 32), 32, fraction)[1] == 0


def test_an_options_line_is_print_whether_read_as_one_line_or_one_box_an_option():
    assert is_options_line(line("A.41   B.4000   C.4   D.40"))
    row = [line("A.12", (180, 790, 250, 826)), line("B.8", (404, 788, 466, 826)), line("C.4", (632, 788, 690, 827))]
    assert all(is_options_line(option, row) for option in row)
    alone = line("A.12", (180, 790, 250, 826))
    assert not is_options_line(alone, [alone, line("12个", (180, 900, 250, 930))])  # an answer "A.12"? not print


def test_a_try_read_on_into_the_keys_answer_is_not_a_sure_mistake_and_a_sign_before_it_is():
    key = KeyQuestion.model_validate({"id": "2.4", "answer": "50", "points": 1})
    for said in ("550", "5 50", "81250"):  # a struck 5 (or more) read with the final answer after it
        mark = mark_reading(AnswerReading("2.4", "read", said, 1.0, agreeing=4, key_likelihood=0.0), key, "math", "zh")
        assert not mark.is_correct and mark.confidence < 0.9, said
    signed = mark_reading(AnswerReading("2.4", "read", "-50", 1.0, agreeing=4, key_likelihood=0.0), key, "math", "zh")
    assert not signed.is_correct and signed.confidence >= 0.9  # the pupil's minus, read every way
    point = KeyQuestion.model_validate({"id": "1.5", "answer": "6", "points": 1})
    for said in ("86", "66"):  # a one-digit try struck with one short line reads as that digit
        mark = mark_reading(
            AnswerReading("1.5", "read", said, 1.0, agreeing=4, key_likelihood=0.0), point, "math", "zh"
        )
        assert not mark.is_correct and mark.confidence < 0.9, said
    for said in ("1/6", "0.6", "6/7"):  # another number written, the key's digit a part of it
        mark = mark_reading(
            AnswerReading("1.5", "read", said, 1.0, agreeing=4, key_likelihood=0.0), point, "math", "zh"
        )
        assert not mark.is_correct and mark.confidence >= 0.9, said
    other = mark_reading(AnswerReading("1.5", "read", "63", 1.0, agreeing=4, key_likelihood=0.0), point, "math", "zh")
    assert not other.is_correct and other.confidence >= 0.9  # the key's digit first: another number written
    one = KeyQuestion.model_validate({"id": "3.6", "answer": "1", "points": 1})
    struck = mark_reading(
        AnswerReading("3.6", "read", "1/4.1", 0.96, agreeing=3, key_likelihood=0.0), one, "math", "zh"
    )
    assert not struck.is_correct and struck.confidence < 0.9  # a struck 1/4, a gap read as a point, then 1
    lost = mark_reading(AnswerReading("1.5", "read", ".6", 0.85, agreeing=2), point, "math", "zh")
    assert not lost.is_correct and lost.confidence < 0.9


def test_one_row_of_a_fraction_or_the_print_after_a_blank_read_with_the_answer_is_not_a_sure_mistake():
    fraction = KeyQuestion.model_validate({"id": "1", "answer": "32/5", "points": 2})
    for said in ("5", "32"):  # a stacked fraction with one row read, every way alike
        mark = mark_reading(
            AnswerReading("1", "read", said, 1.0, agreeing=4, key_likelihood=0.0), fraction, "math", "zh"
        )
        assert not mark.is_correct and mark.confidence < 0.9, said
    number = KeyQuestion.model_validate({"id": "5", "answer": "540", "points": 2})  # no prompt: 9分=（ ）秒
    unit = mark_reading(AnswerReading("5", "read", "540秒", 1.0, agreeing=4), number, "math", "zh")
    assert not unit.is_correct and unit.confidence < 0.9
    other = mark_reading(AnswerReading("5", "read", "450", 1.0, agreeing=4, key_likelihood=0.0), number, "math", "zh")
    assert not other.is_correct and other.confidence >= 0.9


def test_a_questions_line_ends_where_the_next_questions_label_begins_though_its_number_was_misread():
    page = PageScan(1, Image.new("L", (1414, 2000), 255), Image.new("L", (1414, 2000), 0), [])
    own = ocr.TextLine((71, 1009, 312, 1101), "⑤ 86-18= 68", 0.93)
    beside = ocr.TextLine((728, 1015, 960, 1105), "⑤ 63+16= 79", 0.87)  # ⑥, read as ⑤: not found
    written = ocr.TextLine((330, 1012, 420, 1098), "68", 0.9)
    page.lines.extend([own, beside, written])
    assert question_line(page, Anchor(0, own, " 86-18= 68")) == [own, written]


def test_a_question_line_run_on_into_the_binding_margin_does_not_move_the_margin():
    page = PageScan(1, Image.new("L", (1442, 2000), 255), Image.new("L", (1442, 2000), 0), [])
    lefts = [233, 231, 175, 232, 234, 230, 233, 236]  # one line boxed with the 密 printed left of its number
    anchors = [
        Anchor(0, ocr.TextLine((x, 100 * n, x + 400, 100 * n + 40), f"{n + 1}.3+4=7", 0.95), "3+4=7")
        for n, x in enumerate(lefts)
    ]
    assert _margin(anchors, page) == 230 - round(0.01 * 1442)
    two_columns = anchors + [replace(a, line=replace(a.line, box=(800, *a.line.box[1:]))) for a in anchors[:4]]
    assert _margin(two_columns, page) == 230 - round(0.01 * 1442)


def test_answers_inside_a_line_two_blanks_apart_brackets_and_after_the_equals():
    prompt = "一个长方形长6厘米，宽4厘米，周长是（ ）厘米，面积是（ ）平方厘米。"
    read = "一个长方形长6厘米，宽4厘米，周长是（20）厘米，面积是（24）平方厘米。"
    assert _inserted_text(read, prompt, "；") == "20；24"
    assert _inserted_text(read, prompt) == "2024"  # one blank expected: one answer
    assert _bracket_contents("0.3里面有（3）个0.1") == ["3"]
    assert _bracket_contents("4吨=（ ）千克") == []  # an empty blank holds no answer
    assert _bracket_contents("0.6里面有（.6 ）个0.1。") == [".6"]  # the 0 dropped in reading: not 6
    assert _after_equals("36+47=83") == "83"
    assert _inserted_text("3.6x0.4= 1.44", "3.6×0.4=") == "1.44"  # the printed × read as x is print


def test_a_choice_letter_the_recogniser_dropped_from_its_brackets_is_weighed_and_an_empty_one_is_blank():
    paper = make_school_paper(20005)  # q12: a curly C in its brackets; q10 left empty
    key = AnswerKey.model_validate(paper.answer_key)
    scans = scan_pages(paper.pages)
    readings = read_answers(scans, key)
    written = {t.question_id: t.written for t in paper.truth}
    assert (written["12"], readings["12"].text) == ("C", "C"), readings["12"]
    assert written["10"] == "" and readings["10"].text == "", readings["10"]
    # the line read as the older engine read it, the C dropped and the line cut off at "（": the
    # option letters weighed in its brackets find the C; in q10's empty brackets, none: left empty
    anchors = find_anchors(scans, key)
    questions = {q.id: q for q in key.questions}
    dropped = replace(anchors["12"], line=replace(anchors["12"].line, text="12.6×4=（"))
    assert _weighed_letter(scans[dropped.page], dropped, questions["12"]) == "C"
    assert _weighed_letter(scans[anchors["10"].page], anchors["10"], questions["10"]) == ""  # left empty
    assert readings["10"].state == "blank" and readings["10"].confidence >= 0.9, readings["10"]


@pytest.mark.parametrize("seed", [20006])
def test_a_generated_school_paper_is_read_with_no_confident_wrong_verdict(seed):
    paper = make_school_paper(seed)
    key = AnswerKey.model_validate(paper.answer_key)
    offline = read_offline(paper.pages, key, subject="math", language="zh", threshold=0.9, crops=False)
    confident = [t for t in paper.truth if offline.marks[t.question_id].confidence >= 0.9]
    wrong = [
        (t.question_id, t.written, offline.marks[t.question_id].student_answer)
        for t in confident
        if offline.marks[t.question_id].is_correct != t.correct
    ]
    assert wrong == []
    assert len(confident) >= 3, "the reader found and trusted almost nothing on a plain school paper"


def test_a_phone_photo_registers_to_its_blank_page_within_one_percent():
    """Sideways (EXIF), in perspective on a desk, shadowed: the aligned page's print lies on the template's."""
    paper = make_school_paper(20023)
    assert paper.variant == "phone photo"
    blank = scan_page(paper.template_pages[0], 1)
    aligned = register(upright_sheet(paper.pages[0]), blank.image)
    assert aligned is not None and aligned.size == blank.image.size
    (dx, dy), _response = cv2.phaseCorrelate(
        np.asarray(blank.image, dtype=np.float64), np.asarray(aligned, dtype=np.float64)
    )
    assert abs(dx) <= 0.01 * blank.image.width and abs(dy) <= 0.01 * blank.image.height, (dx, dy)
    # and the print itself falls on the template's print, not merely on average
    printed, seen = np.asarray(blank.ink) > 0, np.asarray(ink_mask(aligned)) > 0
    assert (printed & seen).sum() / printed.sum() > 0.6
    # each answer region, on its own, lies within 1% of the page of its true place
    template, photo = np.asarray(blank.image), np.asarray(aligned)
    regions = [t.region for t in paper.truth if t.page == 1]
    assert len(regions) >= 4
    pad = round(0.03 * blank.image.width)  # search 3% around the region for its print
    for _x0, y0, _x1, y1 in regions:  # the region's row, with the question's print in it
        x0, x1 = pad, blank.image.width - pad
        window = photo[y0 - pad : y1 + pad, x0 - pad : x1 + pad]
        scores = cv2.matchTemplate(window, template[y0:y1, x0:x1], cv2.TM_CCOEFF_NORMED)
        _low, best, _at_low, (mx, my) = cv2.minMaxLoc(scores)
        shift = (mx - pad, my - pad)  # where the region's print is found, against where it belongs
        assert best > 0.5 and max(abs(shift[0]), abs(shift[1])) <= 0.01 * blank.image.width, ((x0, y0), shift, best)


def test_reading_with_the_template_leaves_the_print_out():
    paper = make_school_paper(20006)
    key = AnswerKey.model_validate(paper.answer_key)
    template = read_template(paper.template_pages, key)
    assert set(template.regions) == {q.id for q in key.questions}
    read = read_with_template(paper.pages, template, key)
    assert read is not None
    for truth in paper.truth:
        reading = read.readings[truth.question_id]
        if reading.state == "read":  # no printed prompt, option, 答 or footer in what was read
            assert "答" not in reading.text and "第" not in reading.text and "页" not in reading.text, reading
    marks = {q.id: mark_reading(read.readings[q.id], q, "math", "zh") for q in key.questions}
    wrong = [
        t.question_id
        for t in paper.truth
        if marks[t.question_id].confidence >= 0.9 and marks[t.question_id].is_correct != t.correct
    ]
    assert wrong == []


def test_a_templated_region_reads_the_writing_without_specks_and_each_blank_alone():
    mask = Image.new("L", (600, 60), 0)
    draw = ImageDraw.Draw(mask)
    draw.rectangle((40, 10, 70, 40), fill=255)  # writing
    draw.rectangle((74, 36, 76, 38), fill=255)  # its decimal point, beside it
    draw.rectangle((560, 50, 563, 52), fill=255)  # a remnant of the print, far away
    draw.rectangle((300, 10, 330, 40), fill=255)  # the second blank's writing
    kept = np.asarray(student_ink(mask, line_height=30)) > 0
    assert kept[37, 75] and not kept[51, 561] and kept[20, 50] and kept[20, 310]
    assert _apart(Image.fromarray(kept.astype(np.uint8) * 255), line_height=30) == [
        (40, 10, 77, 41),
        (300, 10, 331, 41),
    ]
    # a photographed page ending at the region: its edge, a thin line along the region's side, is
    # no writing (it made the writing three lines tall, and it was read once, as a block); a 1
    # as thin, cut by the region's top, is writing
    edged = Image.new("L", (600, 100), 0)
    draw = ImageDraw.Draw(edged)
    draw.rectangle((40, 30, 70, 60), fill=255)
    draw.rectangle((120, 0, 122, 60), fill=255)  # a pencil 1, rising out of the region's top
    draw.rectangle((598, 0, 599, 99), fill=255)  # the paper's edge
    kept = np.asarray(student_ink(edged, line_height=30)) > 0
    assert kept[40, 50] and kept[30, 121] and not kept[:, 598:].any()
    assert Image.fromarray(kept.astype(np.uint8) * 255).getbbox() == (40, 0, 123, 61)
    # the blanks wrapped onto the next row: the second answer is below and left of the first, read second
    wrapped = Image.new("L", (600, 120), 0)
    ImageDraw.Draw(wrapped).rectangle((300, 10, 330, 40), fill=255)
    ImageDraw.Draw(wrapped).rectangle((40, 70, 70, 100), fill=255)
    assert _apart(wrapped, line_height=30) == [(300, 10, 331, 41), (40, 70, 71, 101)]


def test_a_blank_left_empty_is_found_by_the_blank_papers_blanks_and_each_answer_read_in_its_place():
    printed = Image.new("L", (700, 80), 0)  # "text ____ text （    ） text" on the blank paper
    draw = ImageDraw.Draw(printed)
    for x0, x1 in ((10, 120), (290, 360), (560, 600)):
        draw.rectangle((x0, 30, x1, 60), fill=255)
    draw.rectangle((130, 58, 280, 60), fill=255)  # the underline: its band is left out
    draw.rectangle((370, 30, 380, 60), fill=255)  # the brackets
    draw.rectangle((540, 30, 550, 60), fill=255)
    slots = blank_slots(printed, line_height=30, count=2)
    assert slots is not None and [(x0, x1) for x0, _y0, x1, _y1 in slots] == [(121, 290), (381, 540)]
    assert blank_slots(printed, line_height=30, count=3) is None  # not the key's blanks: not used
    written = Image.new("L", (700, 80), 0)
    ImageDraw.Draw(written).rectangle((160, 25, 200, 55), fill=255)  # the first blank's answer, the second empty
    boxes = _in_slots(written, slots, line_height=30)
    assert boxes is not None and boxes[1] is None and boxes[0] == (160, 25, 201, 56)
    ImageDraw.Draw(written).rectangle((620, 25, 640, 55), fill=255)  # writing in no blank: read as before
    assert _in_slots(written, slots, line_height=30) is None
    # marked blank by blank: the first right for its points, the second empty
    question = KeyQuestion.model_validate(
        {"id": "1", "type": "blanks", "blanks": [{"answer": "5", "points": 1}, {"answer": "3", "points": 1}]}
    )
    mark = mark_reading(AnswerReading("1", "read", "5；", 0.95, agreeing=4), question, "math", "zh")
    assert (mark.is_correct, mark.score) == (False, 1) and mark.confidence >= 0.9


def test_a_texts_likelihood_sums_every_alignment_and_separates_the_written_number():
    # Two columns over (blank, 'a', 'b'): 'a' is aa, a-, -a; 'aa' needs a blank between.
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    assert ocr._ctc_probability(probs, [1]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4 + 0.2 * 0.4)
    assert ocr._ctc_probability(probs, [1, 2]) == pytest.approx(0.5 * 0.2)
    assert ocr._ctc_probability(probs, [1, 1]) == 0.0  # a repeat needs a blank column between
    assert ocr._ctc_probability(probs, [0]) == 0.0  # a character the recogniser does not know
    image = Image.new("L", (220, 64), 255)
    ImageDraw.Draw(image).text((12, 8), "7000", fill=0, font_size=40)
    text, _score, likely = ocr.recognise_likely(image, ["7000", "700", "1000", "7000\x00"])
    assert text == "7000" and (text, _score) == ocr.recognise(image)
    assert likely["7000"] > 100 * max(likely["700"], likely["1000"])
    assert likely["7000\x00"] is None  # a character it cannot read: not known


def test_the_next_rows_writing_reaching_up_into_a_region_is_not_its_answer():
    mask = Image.new("L", (600, 100), 0)
    draw = ImageDraw.Draw(mask)
    draw.rectangle((180, 5, 215, 34), fill=255)  # the answer, on the question's row
    draw.rectangle((150, 88, 160, 99), fill=255)  # the top of the next row's digits, cut by the edge
    draw.rectangle((170, 90, 185, 99), fill=255)
    kept = student_ink(mask, line_height=30)
    assert kept.getbbox() == (180, 5, 216, 35)
    alone = Image.new("L", (600, 100), 0)
    ImageDraw.Draw(alone).rectangle((150, 80, 190, 99), fill=255)  # written low, nothing else: kept
    assert student_ink(alone, line_height=30).getbbox() == (150, 80, 191, 100)


def test_a_stroke_cut_by_a_regions_edge_belongs_to_the_region_holding_most_of_it():
    """Rows of a compact calculation section: the next row's tall 6 reaches up into a blank
    question's region (its answer, not this one's), and this row's 7 hangs down into the next."""
    page = Image.new("L", (600, 300), 255)
    draw = ImageDraw.Draw(page)
    upper, lower, below = (0, 0, 600, 100), (0, 100, 600, 200), (0, 200, 600, 300)
    draw.line((300, 80, 300, 190), fill=30, width=6)  # the lower row's tall digit, mostly its own
    draw.line((100, 130, 100, 215), fill=30, width=6)  # the lower row's tail into the row below
    blank, box = own_writing(page, upper, [lower, below], line_height=40)
    assert box == upper and ink_mask(blank.crop(box)).getbbox() is None  # read blank, not the 6's top
    assert ink_mask(page.crop(upper)).getbbox() is not None  # the page given is left as it was
    whole, grown = own_writing(page, lower, [upper, below], line_height=40)
    assert grown == (0, 80, 600, 216)  # both strokes read whole, from the 6's top to the tail's end
    assert ink_mask(whole.crop(grown)).getbbox() is not None
    alone = Image.new("L", (600, 300), 255)
    ImageDraw.Draw(alone).line((300, 80, 300, 150), fill=30, width=6)  # mostly between the regions
    same, kept = own_writing(alone, upper, [(0, 160, 600, 300)], line_height=40)
    assert kept == upper and ink_mask(same.crop(upper)).getbbox() is not None  # nobody else's: kept


def _stacked(top: str, bottom: str, bar: bool) -> tuple[Image.Image, Image.Image]:
    """A pupil's stacked fraction: `top` over a drawn bar (or the empty band a printed answer line
    left when its print, and the bar on it, were taken away) over `bottom`."""
    page = Image.new("L", (220, 130), 255)
    draw = ImageDraw.Draw(page)
    font = _font(HAND_LATIN, 34)
    draw.text((70, 16), top, font=font, fill=40)
    if bar:
        draw.line((60, 50, 130, 53), fill=40, width=3)
    draw.text((70, 50), bottom, font=font, fill=40)
    return page, ink_mask(page)


@pytest.mark.parametrize("bar", [True, False])
def test_a_stacked_fraction_is_read_row_by_row_over_its_bar_or_the_band_the_answer_line_left(bar):
    page, mask = _stacked("11", "30", bar)
    found = read_stacked(page, mask, line_height=32)
    assert found is not None and found.text == "11/30"
    # one row of writing, or rows that are not whole numbers, are no stacked fraction
    row = Image.new("L", (220, 130), 255)
    ImageDraw.Draw(row).text((40, 40), "1130", font=_font(HAND_LATIN, 34), fill=40)
    assert read_stacked(row, ink_mask(row), line_height=32) is None
    words, word_mask = _stacked("ab", "cd", bar)
    assert read_stacked(words, word_mask, line_height=32) is None


def test_a_fraction_of_single_digits_is_read_over_its_short_bar():
    # a bar no wider than the digits it splits (about half a printed line), apart from both rows
    page = Image.new("L", (160, 150), 255)
    draw, font = ImageDraw.Draw(page), _font(HAND_LATIN, 34)
    draw.text((70, 12), "1", font=font, fill=40)
    draw.line((68, 62, 86, 62), fill=40, width=4)
    draw.text((70, 70), "2", font=font, fill=40)
    mask = ink_mask(page)
    box = mask.getbbox()
    assert box is not None and box[2] - box[0] < 0.6 * 36  # narrower than a bar needed to be before
    found = read_stacked(page, mask, line_height=36)
    assert found is not None and found.text == "1/2"


def _printed_row(text: str) -> tuple[PageScan, ocr.TextLine, list[tuple[int, int]]]:
    """A page holding one printed row of `text` (a CJK print font), the row as OCR finds it, and
    each character's x span."""
    from bench.school_papers import print_fonts

    font = _font(list(print_fonts()), 36)
    image = Image.new("L", (1000, 120), 255)
    draw, x, spans = ImageDraw.Draw(image), 40.0, []
    for char in text:
        width = draw.textlength(char, font=font)
        draw.text((x, 40), char, font=font, fill=20)
        spans.append((round(x), round(x + width)))
        x += width + 3
    found = ocr.read_lines(image)
    assert len(found) == 1, [l.text for l in found]
    return PageScan(1, image, ink_mask(image), found), found[0], spans


def test_an_answer_in_its_line_is_read_again_from_where_the_recogniser_saw_it():
    # narrow print before it ('(', ')', '/') puts it further left than its characters' share of
    # the line: placed by the recogniser's own columns, the cut holds the answer whole
    page, row, spans = _printed_row("(3)3/4=34%")
    place = _place_in_line(page, row, "34")
    assert place is not None and place.before == "(3)3/4=" and place.after == "%"
    assert abs(place.left - spans[7][0]) < 12 and abs(place.right - spans[8][1]) < 12
    again = _read_again(page, [row], "34", ["75"])
    assert again is not None and again.text == "34" and [text for text, _score in again.others] == ["34", "34"]


def test_two_blanks_answers_are_read_again_each_from_its_own_place():
    page, row, _spans = _printed_row("2+4=(6),3+3=(6)")
    again = _read_again(page, [row], "6；6", [])
    assert again is not None and again.text == "6；6" and again.key_likelihood is None
    assert [text for text, _score in again.others] == ["6；6", "6；6"]
    assert _read_again(page, [row], "6；6；6", []) is None  # a third 6 is nowhere after the second
    assert _read_again(page, [row], "6；7", []) is None


def test_the_sealing_lines_characters_reaching_past_the_margin_are_never_an_answer():
    # 答 and 要 of 密封线内不要答题, printed sideways beside the numbers: their boxes end a few
    # pixels right of the margin, below a question whose answer is written in its own line
    key = AnswerKey.model_validate(
        {
            "questions": [
                {"id": str(n), "answer": answer, "prompt": prompt, "points": 1}
                for n, (prompt, answer) in enumerate([("15-7=", "8"), ("5×5=", "25"), ("45+19-6=", "58")], start=1)
            ]
        }
    )
    page = page_of(
        [
            line("第1题 15-7= 8", (197, 343, 414, 392)),
            line("第2题 5×5= 25", (195, 652, 417, 708)),
            line("1答", (143, 703, 184, 733)),
            line("第3题 45+19-6= 58", (191, 756, 488, 814)),
            line("要", (145, 768, 185, 796)),
        ]
    )
    readings = read_answers([page], key)
    assert readings["2"].text == "25" and readings["3"].text == "58"
    # writing that starts left of the number but lies mostly right of the margin is read
    written = page_of(
        [
            line("第1题 15-7=", (197, 343, 414, 392)),
            line("第2题 5×5=", (195, 652, 417, 708)),
            line("25", (170, 712, 260, 750)),
            line("第3题 45+19-6= 58", (191, 756, 488, 814)),
        ]
    )
    assert read_answers([written], key)["2"].text == "25"


def test_a_strike_that_leaves_a_number_no_pupil_writes_is_doubted():
    from shared.grading.reader.template import _left_with_a_leading_zero

    assert _left_with_a_leading_zero("085") and _left_with_a_leading_zero("-07")  # 4085 with its 4 taken
    assert not any(_left_with_a_leading_zero(text) for text in ("0.5", "0", "85", "10", "0……3", "-0.25"))


def test_a_wrong_reading_of_a_key_with_a_power_that_lost_it_is_not_a_sure_mistake():
    key = KeyQuestion.model_validate({"id": "3.2", "type": "expression", "answer": "x²-49", "points": 2})
    lost = mark_reading(AnswerReading("3.2", "read", "x+49x9", 0.97, agreeing=3), key, "math", "zh")
    assert not lost.is_correct and lost.confidence < 0.9  # the ² read as a +
    kept = mark_reading(AnswerReading("3.2", "read", "x²+49", 1.0, agreeing=4), key, "math", "zh")
    assert not kept.is_correct and kept.confidence >= 0.9  # the power read: a sign mistake, surely
    plain = KeyQuestion.model_validate({"id": "1", "answer": "49", "points": 1})
    assert mark_reading(AnswerReading("1", "read", "48", 0.97, agreeing=4), plain, "math", "zh").confidence >= 0.9


def test_brackets_holding_a_letter_the_recogniser_weighs_as_nothing_are_not_empty():
    from shared.grading.reader.reading import _ink_in_brackets

    page, row, spans = _printed_row("是原来的(     )倍。")
    assert not _ink_in_brackets(page, row)  # left empty: the weighing may call it blank
    inside = (spans[4][1] + spans[10][0]) // 2
    draw = ImageDraw.Draw(page.image)  # a B written like ß: a stem and two bowls
    draw.line((inside - 7, 44, inside - 7, 82), fill=30, width=3)
    draw.arc((inside - 9, 44, inside + 7, 62), 270, 90, fill=30, width=3)
    draw.arc((inside - 9, 60, inside + 10, 82), 270, 90, fill=30, width=3)
    written = PageScan(1, page.image, ink_mask(page.image), page.lines)
    assert _ink_in_brackets(written, row)  # a B written like ß: writing, whatever it is weighed as


def test_a_small_b_read_as_a_six_is_the_choice_b_unless_an_option_is_six():
    options = {"A": "-1/5", "B": "5", "C": "-5", "D": "1/5"}
    right = KeyQuestion.model_validate({"id": "13", "type": "choice", "answer": "B", "options": options, "points": 2})
    for said in ("6", "（6）"):
        mark = mark_reading(AnswerReading("13", "read", said, 1.0, agreeing=4), right, "math", "zh")
        assert mark.is_correct and mark.score == 2 and mark.confidence >= 0.9, said
    # another letter keyed: a b is a wrong choice, but taken from a 6 it is not a sure one
    other = right.model_copy(update={"answer": "D"})
    wrong = mark_reading(AnswerReading("13", "read", "6", 1.0, agreeing=4), other, "math", "zh")
    assert not wrong.is_correct and wrong.confidence < 0.9
    # an option whose value is 6: the pupil may have written the value, not a letter
    six = KeyQuestion.model_validate(
        {"id": "2", "type": "choice", "answer": "B", "options": {"A": "4", "B": "5", "C": "6", "D": "7"}, "points": 2}
    )
    unsure = mark_reading(AnswerReading("2", "read", "6", 1.0, agreeing=4), six, "math", "zh")
    assert not unsure.is_correct and unsure.confidence < 0.9
    # a 6 with more written is no lone letter
    more = mark_reading(AnswerReading("13", "read", "63", 1.0, agreeing=4), right, "math", "zh")
    assert not more.is_correct and more.confidence < 0.9


def test_a_capital_read_for_the_keys_small_letter_is_that_letter():
    key = KeyQuestion.model_validate({"id": "1", "answer": "7a+2", "points": 2})
    for said in ("7A+2", "7a+2"):
        mark = mark_reading(AnswerReading("1", "read", said, 1.0, agreeing=4), key, "math", "zh")
        assert mark.is_correct and mark.confidence >= 0.9, said
    wrong = mark_reading(AnswerReading("1", "read", "6A+2", 1.0, agreeing=4), key, "math", "zh")
    assert not wrong.is_correct and wrong.confidence < 0.9  # a letter taken so, then still not the key
    assert as_digits("6A+2X", key) == "6a+2X"  # only the key's own letters
    # a key with a capital in it (a point A, a unit L) keeps the reading's letters as they are
    point = KeyQuestion.model_validate({"id": "2", "answer": "A(2,a)", "points": 1})
    assert as_digits("A(2,A)", point) == "A(2,A)"
