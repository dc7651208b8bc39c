"""Pre-flight estimates: the documented token examples through the CLI, and the API."""

import io
import json

import pytest
from click.testing import CliRunner

from client.cli import main
from tests.helpers import page_bytes


def cli_estimate(*args):
    result = CliRunner().invoke(main, ["estimate", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    ("model", "size", "detail", "tokens"),
    [
        ("gpt-4o", "1024x1024", "high", 765),
        ("gpt-4o", "2048x4096", "high", 1105),
        ("gpt-4o", "4096x8192", "low", 85),
        ("gpt-4.1-mini", "1800x2400", "high", 2353),
        ("gpt-4o-mini", "1024x1024", "high", 25501),
    ],
)
def test_markq_estimate_gives_the_documented_tokens(model, size, detail, tokens):
    out = cli_estimate("--model", model, "--size", size, "--detail", detail)
    assert out["models"][model]["pages"][0]["tokens"] == tokens


def test_patch_models_show_their_patches_and_multiplier():
    page = cli_estimate("--model", "gpt-4.1-mini", "--size", "1800x2400")["models"]["gpt-4.1-mini"]["pages"][0]
    assert (page["patches"], page["multiplier"]) == (1452, 1.62)


def test_models_side_by_side_show_mini_images_cost_no_less_than_4o():
    out = cli_estimate("--size", "1240x1754", "--size", "1240x1754", "--class-size", "40")
    models = out["models"]
    assert set(models) == {"gpt-4o", "gpt-4o-mini", "gpt-4.1-mini"}
    image_cost = {m: sum(p["cost_usd"] for p in v["pages"]) for m, v in models.items()}
    # 33x the tokens at a 16.7x lower price: a gpt-4o-mini page costs twice a gpt-4o page
    assert image_cost["gpt-4o-mini"] / image_cost["gpt-4o"] == pytest.approx(2.0, rel=0.01)
    for model in models.values():
        assert model["class"]["papers"] == 40
        assert model["class"]["cost_usd"] > 39 * model["paper"]["cost_usd_with_cached_prefix"]


def test_a_folder_of_pages_is_one_paper_priced_as_markq_sends_it(tmp_path):
    for n in (1, 2):
        (tmp_path / f"p{n}.png").write_bytes(page_bytes(size=(1024, 1024), fmt="PNG"))
    out = cli_estimate(str(tmp_path), "--model", "gpt-4o")
    model = out["models"]["gpt-4o"]
    assert [page["tokens"] for page in model["pages"]] == [765, 765]  # as given, as the provider scales it
    sent = [page["sent_tokens"] for page in model["pages"]]
    # markq crops the blank margins and scales to the writing: fewer tokens, and those are priced
    assert all(tokens < 765 for tokens in sent)
    assert model["paper"]["image_tokens"] == sum(sent)
    assert all(page["legible"] for page in model["pages"])
    assert out["assumptions"]["pages_as_sent"] is True
    assert out["recommended"]["model"] == "gpt-4o" and out["recommended"]["lane"] == "economy"


def test_original_detail_only_where_a_model_has_it(tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["estimate", "--model", "gpt-4o", "--size", "100x100", "--detail", "original"])
    assert result.exit_code == 1 and "no 'original' detail" in result.output
    models = tmp_path / "models.json"
    models.write_text(
        json.dumps(
            {
                "prices_taken": "2026-11-01",
                "models": {
                    "gpt-next": {
                        "scheme": "patch",
                        "multiplier": 1.0,
                        "original_patch_budget": 10000,
                        "input": 1.0,
                        "cached_input": 0.1,
                        "output": 4.0,
                    }
                },
            }
        )
    )
    from shared.settings import get_settings

    monkeypatch.setenv("MARKQ_MODELS_FILE", str(models))
    get_settings.cache_clear()
    try:
        out = cli_estimate("--model", "gpt-next", "--size", "3200x3200", "--detail", "original")
        assert out["models"]["gpt-next"]["pages"][0]["tokens"] == 10000
        assert out["prices_taken"] == "2026-11-01"
    finally:
        monkeypatch.delenv("MARKQ_MODELS_FILE")
        get_settings.cache_clear()


def test_bad_sizes_are_usage_errors():
    result = CliRunner().invoke(main, ["estimate", "--size", "big"])
    assert result.exit_code == 2 and "1024x768" in result.output


def test_the_api_estimates_sizes_and_page_files(client, auth):
    by_size = client.post(
        "/v1/estimate",
        headers=auth("A"),
        json={"sizes": [{"width": 1024, "height": 1024}], "models": ["gpt-4o", "gpt-5"], "class_size": 30},
    )
    assert by_size.status_code == 200, by_size.json
    assert by_size.json["models"]["gpt-4o"]["pages"][0]["tokens"] == 765
    assert by_size.json["models"]["gpt-5"]["pages"][0]["tokens"] == 70 + 4 * 140
    by_file = client.post(
        "/v1/estimate",
        headers=auth("A"),
        data={"pages": [(io.BytesIO(page_bytes(size=(2048, 4096), fmt="PNG")), "p.png")], "models": "gpt-4o"},
    )
    assert by_file.status_code == 200, by_file.json
    assert by_file.json["models"]["gpt-4o"]["pages"][0]["tokens"] == 1105
    unknown = client.post(
        "/v1/estimate", headers=auth("A"), json={"sizes": [{"width": 1, "height": 1}], "models": ["gpt-99"]}
    )
    assert unknown.status_code == 422 and "gpt-99" in unknown.json["error"]["message"]
    empty = client.post("/v1/estimate", headers=auth("A"), json={"sizes": []})
    assert empty.status_code == 422 and empty.json["error"]["details"]


def test_every_lane_is_priced_side_by_side():
    out = cli_estimate("--size", "1240x1754", "--size", "1240x1754", "--model", "gpt-5-mini", "--model", "gpt-4o")
    mini, big = out["models"]["gpt-5-mini"], out["models"]["gpt-4o"]
    assert mini["flex"] is True and big["flex"] is False
    assert set(mini["lanes"]) == {"vision", "economy", "flex", "cascade"}
    assert set(big["lanes"]) == {"vision", "economy", "cascade"}  # gpt-4o has no Flex tier
    for lanes in (mini["lanes"], big["lanes"]):
        assert lanes["economy"]["class_usd"] == pytest.approx(lanes["vision"]["class_usd"] / 2, rel=1e-3)
        assert 0 < lanes["cascade"]["class_usd"] < lanes["vision"]["class_usd"]
        assert lanes["vision"]["cached_tokens"] > 0  # the prefix is cached after the first paper
    assert mini["lanes"]["flex"]["class_usd"] == mini["lanes"]["economy"]["class_usd"]
    assert out["assumptions"]["measured"] == {"output_per_question": "assumed", "unsure_share": "assumed"}
    assert out["recommended"] is None  # sizes alone say nothing of legibility


def test_an_exam_with_a_blank_paper_is_priced_with_its_crops_where_they_are_cheaper():
    from shared.grading.exam_cost import vision_sheet
    from shared.models import Exam
    from shared.spending.estimate import PageSize, estimate

    questions = [{"id": str(n), "answer": "1", "points": 1} for n in range(1, 7)]
    template = {
        "status": "ready",
        "sizes": [[1240, 1754]],
        "line_heights": [36],
        # six one-line questions down the page, each with a line of room for its answer; their
        # print ends a quarter of the way across
        "regions": {
            q["id"]: {"page": 1, "box": [90, 200 + 200 * n, 1150, 320 + 200 * n]} for n, q in enumerate(questions)
        },
        "printed": {q["id"]: [0, 6, 300, 44] for q in questions},
    }
    exam = Exam(provider="vision", template=template, answer_key={"questions": questions}, model="gpt-5-mini")
    page = PageSize("page-1", 1240, 1754, {"gpt-5-mini": (406, 608)})
    sheet = vision_sheet(exam, [page], "gpt-5-mini")
    assert sheet is not None and sheet[1] < 608  # six rows of print and writing, not the page
    with_sheet = estimate([page], ["gpt-5-mini"], questions=6, sheets={"gpt-5-mini": sheet})["models"]["gpt-5-mini"]
    without = estimate([page], ["gpt-5-mini"], questions=6)["models"]["gpt-5-mini"]
    assert with_sheet["crops_instead_of_pages"] and not without["crops_instead_of_pages"]
    for lane in ("vision", "economy", "flex"):
        assert with_sheet["lanes"][lane]["prompt_tokens"] < without["lanes"][lane]["prompt_tokens"]
    # no blank paper read, another reader, or pages that are not the blank paper's: no crops priced
    assert (
        vision_sheet(
            Exam(provider="vision", template={**template, "status": "reading"}, answer_key=exam.answer_key),
            [page],
            "gpt-5-mini",
        )
        is None
    )
    assert (
        vision_sheet(Exam(provider="cascade", template=template, answer_key=exam.answer_key), [page], "gpt-5-mini")
        is None
    )
    assert vision_sheet(exam, [page, page], "gpt-5-mini") is None
