"""Generated test pages for benchmarks: a full exam sheet drawn at a given resolution, and the
same sheet photographed by a phone (desk around it, slight tilt, shadow, EXIF rotation)."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

from client.samples import HAND_EN_FONTS, HAND_ZH_FONTS, PRINT_FONTS, _font

QUESTIONS = [
    ("1. 计算：7 × 8 =", "56"),
    ("2. 把 3/4 写成小数：", "0.75"),
    ("3. 125 × 4 =", "500"),
    ("4. 23 ÷ 4 =", "5……3"),
    ("5. 2 千克 = ____ 克", "2000"),
    ("6. 长方形长8厘米，宽4厘米，周长是？", "24厘米"),
    ("7. She ____ (play) tennis every Sunday.", "plays"),
    ("8. The plural of 'child' is ____.", "children"),
    ("9. 0.6 + 0.25 =", "0.85"),
    ("10. 36 ÷ 9 × 3 =", "12"),
    ("11. 比较大小：3/5 ○ 0.5", ">"),
    ("12. They ____ (read) in the library now.", "are reading"),
]


def exam_sheet(width: int, height: int, seed: int = 0) -> Image.Image:
    """A full sheet, questions down the page, printed at 12 pt and answered by hand at ~16 pt,
    whatever the resolution (sizes scale with the sheet's width, as on paper)."""
    rng = random.Random(seed)
    dpi = width / 8.27  # an A4-wide sheet
    printed = _font(PRINT_FONTS, round(12 / 72 * dpi))
    hand_zh, hand_en = _font(HAND_ZH_FONTS, round(17 / 72 * dpi)), _font(HAND_EN_FONTS, round(16 / 72 * dpi))
    page = Image.new("RGB", (width, height), (250, 249, 244))
    draw = ImageDraw.Draw(page)
    margin = round(0.8 * dpi)
    draw.text(
        (margin, margin),
        "三年级期中测试  Grade 3 mid-term test   姓名 / Name: ________",
        font=_font(PRINT_FONTS, round(15 / 72 * dpi)),
        fill=(10, 10, 10),
    )
    y = margin + round(0.6 * dpi)
    step = (height - y - margin) / len(QUESTIONS)
    for question, answer in QUESTIONS:
        draw.text((margin, y), question, font=printed, fill=(15, 15, 15))
        written = answer if rng.random() > 0.3 else answer[::-1]
        hand = hand_en if written.isascii() else hand_zh
        draw.text(
            (margin + round(0.6 * dpi) + rng.randint(0, 30), y + round(0.28 * dpi)),
            written,
            font=hand,
            fill=(25, 45, 150),
        )
        y += step
    return page.filter(ImageFilter.GaussianBlur(width / 2000))


def jpeg(image: Image.Image, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif or Image.Exif())
    return out.getvalue()


def phone_photo(seed: int = 0) -> bytes:
    """A 4032x3024 photo as a phone stores it: pixels sideways, EXIF orientation 6 (turn 90°
    clockwise to view), the sheet upright in portrait view, with desk, tilt and a shadow."""
    rng = random.Random(seed)
    view = Image.new("RGB", (3024, 4032), (118, 96, 72))  # the desk
    sheet = exam_sheet(2550, 3607, seed).rotate(rng.uniform(-2.5, 2.5), expand=True, fillcolor=(118, 96, 72))
    view.paste(sheet, ((3024 - sheet.width) // 2, (4032 - sheet.height) // 2))
    shadow = Image.linear_gradient("L").resize(view.size).point(lambda v: 255 - v // 4)
    view = Image.composite(view, Image.new("RGB", view.size, (0, 0, 0)), shadow)
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(view.rotate(90, expand=True), exif)
