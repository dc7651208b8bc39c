import pytest

from shared.grading.equivalence import equivalent


@pytest.mark.parametrize(
    ("student", "key", "verdict"),
    [
        ("3/4", "0.75", True),
        ("75%", "0.75", True),
        ("0.75", "3/4", True),
        ("1又1/2", "1.5", True),
        ("1 1/2", "3/2", True),
        ("5……3", "5余3", True),
        ("5 r 3", "5……3", True),
        ("5……2", "5余3", False),
        ("24厘米", "24 cm", True),
        ("0.240 m", "24cm", True),
        ("2000克", "2千克", True),
        ("24 cm²", "24平方厘米", True),
        ("x^2-81", "x²-81", True),  # a raised 2 is a power, not 2x
        ("2x-81", "x²-81", False),
        ("3.6×10^5", "3.6×10⁵", True),
        ("24", "24厘米", False),  # a missing unit is a unit error
        ("24厘米", "24平方厘米", False),  # length is not area
        ("200", "2000", False),
        ("2x+3", "3+2x", True),
        ("x=3", "3", True),
        ("７×８", "56", True),  # full-width digits and signs
        ("", "56", False),  # blank against a value
        ("√8", "2√2", True),  # a root's number is the root's, not the letters of sqrt
        ("√2/2", "1/√2", True),
        ("√2/2", "1/2", False),  # cos60° taken for cos45°
        ("√3", "3", False),
        ("2√(x+1)", "2√(1+x)", True),
        ("twelve", "12", None),  # words are the model's to judge
        ("childs", "children", None),
        ("因为长方形的周长是长加宽的和乘2", "24厘米", None),
    ],
)
def test_the_deterministic_check(student, key, verdict):
    assert equivalent(student, key) is verdict


def test_an_accepted_form_counts():
    assert equivalent("5余3", "5……3", accepted=("5余3",)) is True
    assert equivalent("0.6", "3/5", accepted=("60%",)) is True
