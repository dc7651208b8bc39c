"""The chat request for one paper: a static prefix first (identical for every paper of an exam,
so the provider's prompt cache applies), then the page images as image parts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.grading.answer_key import AnswerKey
from shared.grading.marks import SCHEMA_NAME, marks_schema
from shared.models import Exam, KnowledgePoint
from shared.spending.costs import image_tokens, text_tokens

_READ = """You mark primary and middle school (grades 1-9) test papers from photos or scans.
For every question in the answer key:
- Read the student's answer exactly as written; write it in student_answer ("" if blank).
- Compare it with the key's answer and accepted forms; equivalent forms (0.75 = 3/4 = 75%) are correct."""
# Said only where some question of the key has no answer: tokens a key with every answer never needs.
_SOLVE = "- Where the key gives no answer, solve the question yourself first, then compare."
_MARK = """- Award a score between 0 and the question's points, using the partial-credit notes and the rubric.
- Tag the knowledge points the question tests, from the given list only; for a wrong answer these are the points the student missed.
- error_type: "none" when correct; otherwise calculation, concept, misread_question, unit, incomplete, blank, or illegible.
- If the handwriting cannot be read with confidence, use error_type "illegible" and a low confidence; never guess.
- explanation says what went wrong and correction shows the right working, in the exam's language, briefly, for the student.
- confidence is your certainty in the verdict, from 0 to 1.
Reply only with the JSON object the schema describes."""


@dataclass(frozen=True)
class PageImage:
    """A page (or an image of crops) as the provider will fetch it: a presigned https URL or a
    data: URL; `detail`: its own detail, where not the exam's (costs.sheet_detail)."""

    url: str
    detail: str | None = None


def instructions(answer_key: AnswerKey) -> str:
    """The system prompt for this key: the same for every paper of an exam."""
    unanswered = not all(question.answer for question in answer_key.questions)
    return "\n".join([_READ, *([_SOLVE] if unanswered else []), _MARK])


def _whole(value: Any) -> Any:
    """The same JSON value with whole floats written as integers (points 2.0 as 2: fewer tokens)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def exam_context(exam: Exam, answer_key: AnswerKey, vocabulary: list[KnowledgePoint], *, sections: bool = True) -> str:
    """The exam as the model reads it, serialised deterministically (sorted keys, no spacing).
    Without `sections` the questions' section headings are left out: an image of crops labels each
    question with its number, and where a question stands on the page does not matter."""
    # Fields left at their defaults say nothing the instructions do not: leaving them out is tokens saved.
    key = answer_key.model_dump(
        mode="json", exclude_defaults=True, exclude=None if sections else {"questions": {"__all__": {"section"}}}
    )
    context = {
        "subject": exam.subject,
        "grade": exam.grade,
        "language": exam.language,
        "answer_key": _whole(key),
        "rubric": exam.rubric,
        # Each point's name in the exam's language alone: the model writes in it, and tags by id.
        "knowledge_points": {kp.id: kp.name_in(exam.language) for kp in vocabulary},
    }
    return json.dumps(context, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def build_request(
    exam: Exam,
    answer_key: AnswerKey,
    vocabulary: list[KnowledgePoint],
    pages: list[PageImage],
    max_completion_tokens: int,
    caption: str | None = None,
    flex: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for `client.chat.completions.create`. `caption` says what the images are
    when they are not the paper's pages in order (the cascade's crops); `flex` asks for the Flex
    tier."""
    schema = marks_schema(answer_key, [kp.id for kp in vocabulary])
    image_parts = [
        {"type": "image_url", "image_url": {"url": page.url, "detail": page.detail or exam.image_detail}}
        for page in pages
    ]
    return {
        "model": exam.model,
        "messages": [
            {"role": "system", "content": instructions(answer_key)},
            {"role": "system", "content": exam_context(exam, answer_key, vocabulary, sections=caption is None)},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": caption or f"The student's paper, {len(pages)} page(s) in order."},
                    *image_parts,
                ],
            },
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema},
        },
        "max_completion_tokens": max_completion_tokens,
        "prompt_cache_key": f"markq-exam-{exam.id}",
        **({"service_tier": "flex"} if flex else {}),
    }


def prompt_version(request: dict[str, Any]) -> str:
    """A hash of everything in the request but the pages: same hash, same marking."""
    fixed = {
        "model": request["model"],
        "prefix": request["messages"][:-1],
        "text": [p for p in request["messages"][-1]["content"] if p["type"] == "text"],
        "detail": sorted(
            {
                p["image_url"].get("detail", "auto")
                for p in request["messages"][-1]["content"]
                if p["type"] == "image_url"
            }
        ),
        "response_format": request["response_format"],
    }
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def schema_tokens(request: dict[str, Any]) -> int:
    """The reply's schema, which counts as prompt at OpenAI."""
    return text_tokens(
        json.dumps(request["response_format"]["json_schema"]["schema"], sort_keys=True, separators=(",", ":"))
    )


def count_prompt_tokens(request: dict[str, Any], page_sizes: list[tuple[int, int]]) -> int:
    """Prompt tokens by OpenAI's image rules and markq's text estimate (4 per message overhead);
    the response schema counts as prompt, as it does at OpenAI. `page_sizes`: the request's images'
    sizes in order, each counted at its own detail; none: the text alone."""
    tokens = schema_tokens(request)
    details = []
    for message in request["messages"]:
        tokens += 4
        content = message["content"]
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] == "text":
                tokens += text_tokens(part["text"])
            else:
                details.append(part["image_url"].get("detail", "auto"))
    return tokens + sum(image_tokens(request["model"], w, h, d) for (w, h), d in zip(page_sizes, details))
