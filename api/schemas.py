"""Request and response schemas; flask-smorest turns them into the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.paging import PageArgs
from api.spec import ErrorBodySchema
from shared.models import FlexFallback, Priority, Reader
from shared.settings import get_settings

SUBJECTS = ("math", "chinese", "english")


def answer_key_field(**kwargs: object) -> fields.Dict:
    """An exam's answer key: checked by one layer only, shared.grading.answer_key (pydantic), which
    names a wrong question by its id; documented by that model's JSON Schema (components AnswerKey,
    KeyQuestion, Blank, registered from pydantic in api/__init__.py)."""
    return fields.Dict(
        metadata={"allOf": [{"$ref": "#/components/schemas/AnswerKey"}], "description": "docs/answer-keys.md"},
        **kwargs,
    )


class ExamCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(1, 200))
    subject = fields.String(required=True, validate=validate.OneOf(SUBJECTS))
    grade = fields.Integer(required=True, validate=validate.Range(1, 9))
    language = fields.String(load_default="zh", validate=validate.OneOf(["zh", "en"]))
    answer_key = answer_key_field(required=True)
    rubric = fields.String(load_default="", validate=validate.Length(max=10_000))
    model = fields.String(load_default=lambda: get_settings().default_model)
    image_detail = fields.String(
        load_default=lambda: get_settings().default_image_detail,
        validate=validate.OneOf(["low", "high", "auto"]),
    )
    budget_usd = fields.Decimal(
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=0),
        metadata={"description": "Most the exam may spend, in dollars; none: no cap."},
    )
    callback_url = fields.Url(
        load_default=None,
        allow_none=True,
        schemes={"http", "https"},
        require_tld=False,
        metadata={
            "description": "Told (POST, signed) when each paper is graded and when the exam is done. The host must be on the admin's allow-list."
        },
    )
    priority = fields.String(
        load_default=Priority.standard.value,
        validate=validate.OneOf([p.value for p in Priority]),
        metadata={
            "description": "economy: papers go through the Batch API at half the price, results within 24 hours. "
            "flex: each paper is one call at the provider's Flex tier, also at half the price, answered "
            "in minutes rather than seconds and now and then refused for want of capacity (then asked "
            "again); for models with a Flex tier (POST /v1/estimate says which)."
        },
    )
    flex_fallback = fields.String(
        load_default=FlexFallback.wait.value,
        validate=validate.OneOf([f.value for f in FlexFallback]),
        metadata={
            "description": "When the Flex tier keeps refusing a paper: wait (ask again, never paying more) or "
            "standard (after three refusals, one call at the standard tier at the full price)."
        },
    )
    provider = fields.String(
        load_default=lambda: get_settings().provider.value,
        validate=validate.OneOf([reader.value for reader in Reader]),
        metadata={
            "description": "Who reads the answers. vision: the vision model reads every page. local: the OCR engine on "
            "the server, free, against the answer key; answers it is unsure of go to a teacher. cascade: "
            "local first, and only the questions it is unsure of go to the vision model, as crops when "
            "that is cheaper. Default: vision when the server has an OpenAI key, else local."
        },
    )
    trial_papers = fields.Integer(
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "Grade only the first N papers; hold the rest until POST /v1/exams/{id}/release."},
    )
    knowledge_points = fields.List(
        fields.Nested(lambda: OwnPointSchema()),
        load_default=list,
        metadata={
            "description": "The school's own points this exam uses, referenced by their id in the answer key: "
            "they join the school's vocabulary (id school-<school>.<id>), and every later exam naming the same id "
            "counts into the same point."
        },
    )


class OwnPointSchema(Schema):
    id = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9.-]{0,40}$"))
    name_zh = fields.String(required=True, validate=validate.Length(1, 200))
    name_en = fields.String(validate=validate.Length(max=200))
    strand = fields.String(validate=validate.Length(max=100))
    aliases = fields.List(fields.String(validate=validate.Length(1, 200)), validate=validate.Length(max=20))
    grade = fields.Integer(validate=validate.Range(1, 9))
    refines = fields.String(
        validate=validate.Length(max=100), metadata={"description": "The national point it refines, if any."}
    )


class PointImportSchema(Schema):
    """The school's own knowledge points, added once and shared by all its exams."""

    subject = fields.String(required=True, validate=validate.OneOf(SUBJECTS))
    grade = fields.Integer(
        required=True, validate=validate.Range(1, 9), metadata={"description": "For points that do not give their own."}
    )
    knowledge_points = fields.List(fields.Nested(OwnPointSchema), required=True, validate=validate.Length(1, 2000))


class PointCsvArgs(Schema):
    subject = fields.String(required=True, validate=validate.OneOf(SUBJECTS))
    grade = fields.Integer(
        required=True, validate=validate.Range(1, 9), metadata={"description": "For rows without a grade."}
    )


class ExamUpdateSchema(Schema):
    budget_usd = fields.Decimal(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"description": "New cap in dollars, or null for none. Raising it resumes paused papers."},
    )


class BatchSchema(Schema):
    id = fields.UUID()
    status = fields.String()
    total = fields.Integer()
    completed = fields.Integer()
    failed = fields.Integer()
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)


class UsageTotalsSchema(Schema):
    calls = fields.Integer(metadata={"description": "Provider calls made."})
    prompt_tokens = fields.Integer()
    cached_tokens = fields.Integer(
        metadata={"description": "Prompt tokens served from the provider's cache (priced lower)."}
    )
    completion_tokens = fields.Integer()
    cost_usd = fields.Float(metadata={"description": "Dollars spent, plus worst-case reservations of calls in flight."})
    estimated_prompt_tokens = fields.Integer()
    estimated_completion_tokens = fields.Integer()
    estimated_cost_usd = fields.Float()
    reused = fields.Integer(
        metadata={"description": "Papers graded by reusing an identical earlier result, at no cost."}
    )
    in_flight = fields.Integer()


class SchoolSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    daily_budget_usd = fields.Float(allow_none=True)
    spent_today_usd = fields.Float(metadata={"description": "Since 00:00 UTC."})
    usage = fields.Nested(UsageTotalsSchema)


class ExamSchema(Schema):
    id = fields.UUID()
    warnings = fields.List(
        fields.String(),
        metadata={"description": "What the exam asks that its reader cannot do (e.g. a rubric offline)."},
    )
    title = fields.String()
    subject = fields.String()
    grade = fields.Integer()
    language = fields.String()
    model = fields.String()
    image_detail = fields.String()
    rubric = fields.String()
    answer_key = answer_key_field()
    status_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    budget_usd = fields.Float(allow_none=True)
    trial_papers = fields.Integer(allow_none=True)
    trial_released = fields.Boolean()
    priority = fields.String()
    flex_fallback = fields.String()
    provider = fields.String()
    callback_url = fields.String(allow_none=True)
    callback_secret = fields.String(
        allow_none=True,
        metadata={
            "description": "Only in the reply that creates the exam: the whsec_... secret a Standard Webhooks "
            "library verifies the webhook-signature header with."
        },
    )
    webhooks = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "Deliveries by status."}
    )
    batches = fields.List(
        fields.Nested(lambda: BatchSchema()), metadata={"description": "Batch API jobs (economy lane)."}
    )
    review = fields.Nested(lambda: ReviewSummarySchema())
    papers = fields.Integer(metadata={"description": "Papers submitted."})
    progress = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "Paper counts by status."}
    )
    usage = fields.Nested(UsageTotalsSchema, metadata={"description": "Provider usage and cost so far."})
    cost = fields.Nested(
        lambda: ExamCostSchema(), metadata={"description": "The exam's cost: estimated against actual."}
    )


class PageSchema(Schema):
    number = fields.Integer()
    format = fields.String(attribute="original_format")
    width = fields.Integer()
    height = fields.Integer()
    bytes = fields.Integer(attribute="original_bytes")


class QuestionResultSchema(Schema):
    question_id = fields.String()
    student_answer = fields.String()
    correct_answer = fields.String()
    is_correct = fields.Boolean()
    score = fields.Float(
        allow_none=True, metadata={"description": "None while an illegible answer waits for a teacher."}
    )
    max_score = fields.Float()
    knowledge_points = fields.List(fields.String())
    error_type = fields.String()
    explanation = fields.String()
    correction = fields.String()
    confidence = fields.Float()
    needs_review = fields.Boolean()
    review_reason = fields.String(allow_none=True)
    from_key = fields.Boolean(metadata={"description": "False when the key had no answer and the model solved it."})
    marked_by = fields.String(
        metadata={"description": "local: the offline reader marked it; vision: the vision model."}
    )
    check_equivalent = fields.Boolean(
        allow_none=True,
        metadata={
            "description": "The deterministic check: answer equivalent to the key (true/false), or undecided (null)."
        },
    )
    model_is_correct = fields.Boolean()
    reviewed_at = fields.DateTime(allow_none=True)


class PaperSchema(Schema):
    id = fields.UUID()
    exam_id = fields.UUID()
    student_ref = fields.String()
    class_label = fields.String()
    status = fields.String()
    status_reason = fields.String(allow_none=True)
    attempts = fields.Integer()
    reused_from = fields.UUID(
        allow_none=True, metadata={"description": "The earlier paper with identical pages whose result was reused."}
    )
    score = fields.Float(allow_none=True, metadata={"description": "Points earned on answers with a final verdict."})
    max_score = fields.Float(allow_none=True)
    pending_points = fields.Float(
        metadata={"description": "Points of answers waiting for a teacher's review: not in the score, not zero."}
    )
    provisional = fields.Boolean(metadata={"description": "True while any answer waits for review."})
    created_at = fields.DateTime()
    graded_at = fields.DateTime(allow_none=True)
    pages = fields.List(fields.Nested(PageSchema))
    questions = fields.List(fields.Nested(QuestionResultSchema))
    usage = fields.Nested(UsageTotalsSchema)
    status_url = fields.String()
    replaced = fields.List(
        fields.UUID(),
        metadata={"description": "On submission: the same student's failed papers this one replaced (removed)."},
    )


class PaperListArgs(PageArgs):
    status = fields.String(
        validate=validate.OneOf(["uploading", "queued", "processing", "graded", "needs_review", "failed", "paused"])
    )


class PaperSummarySchema(Schema):
    id = fields.UUID()
    student_ref = fields.String()
    class_label = fields.String()
    status = fields.String()
    status_reason = fields.String(allow_none=True)
    score = fields.Float(allow_none=True)
    max_score = fields.Float(allow_none=True)
    pending_points = fields.Float()


class MissedPointSchema(Schema):
    id = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    missed = fields.Integer(metadata={"description": "Questions tagged with this point answered wrong."})
    attempted = fields.Integer(metadata={"description": "Questions tagged with this point with a final verdict."})


class BucketSchema(Schema):
    range = fields.String(metadata={"description": "Share of the decided points earned, or 'pending review'."})
    papers = fields.Integer()
    provisional = fields.Integer(metadata={"description": "Of these, papers with answers still waiting for review."})


class QuestionAccuracySchema(Schema):
    question_id = fields.String()
    attempted = fields.Integer()
    correct = fields.Integer()
    accuracy = fields.Float(allow_none=True)
    mean_score = fields.Float()
    points = fields.Float()


class ClassSummarySchema(Schema):
    class_label = fields.String()
    papers = fields.Integer()
    mean_percent = fields.Float()
    missed_knowledge_points = fields.List(fields.Nested(MissedPointSchema))


class ReviewSummarySchema(Schema):
    needing_review = fields.Integer()
    reviewed = fields.Integer()
    model_teacher_agreement = fields.Float(
        allow_none=True,
        metadata={"description": "Share of reviewed questions where the teacher kept the model's verdict."},
    )


class HistogramBinSchema(Schema):
    from_ = fields.Integer(data_key="from", attribute="from", metadata={"description": "Percent of the points, from."})
    to = fields.Integer(metadata={"description": "Percent of the points, up to (not including, but 100 in the last)."})
    papers = fields.Integer()
    provisional = fields.Integer()


class WrongAnswerSchema(Schema):
    answer = fields.String()
    count = fields.Integer()


class ItemStatisticsSchema(Schema):
    question_id = fields.String()
    attempted = fields.Integer()
    difficulty = fields.Float(allow_none=True, metadata={"description": "Share answering right (0 to 1)."})
    discrimination = fields.Float(
        allow_none=True, metadata={"description": "Point-biserial correlation with the number right (-1 to 1)."}
    )
    common_wrong_answers = fields.List(fields.Nested(WrongAnswerSchema))


class ExamStatisticsSchema(Schema):
    papers = fields.Integer()
    provisional = fields.Integer()
    max_score = fields.Float(allow_none=True)
    mean = fields.Float(allow_none=True)
    median = fields.Float(allow_none=True)
    standard_deviation = fields.Float(allow_none=True)
    histogram = fields.List(fields.Nested(HistogramBinSchema))
    kr20 = fields.Float(allow_none=True, metadata={"description": "KR-20 reliability over the questions."})
    questions = fields.List(fields.Nested(ItemStatisticsSchema))


class ExamReportSchema(Schema):
    exam_id = fields.UUID()
    title = fields.String()
    language = fields.String()
    papers = fields.List(fields.Nested(PaperSummarySchema))
    score_distribution = fields.List(fields.Nested(BucketSchema))
    questions = fields.List(fields.Nested(QuestionAccuracySchema))
    missed_knowledge_points = fields.List(fields.Nested(MissedPointSchema))
    classes = fields.List(fields.Nested(ClassSummarySchema))
    review = fields.Nested(ReviewSummarySchema)
    statistics = fields.Nested(ExamStatisticsSchema)


class ReviewItemSchema(Schema):
    paper_id = fields.UUID()
    student_ref = fields.String()
    class_label = fields.String()
    question_id = fields.String()
    student_answer = fields.String()
    correct_answer = fields.String()
    model_is_correct = fields.Boolean()
    model_score = fields.Float(allow_none=True)
    max_score = fields.Float()
    error_type = fields.String()
    confidence = fields.Float()
    check_equivalent = fields.Boolean(allow_none=True)
    review_reason = fields.String(allow_none=True)
    knowledge_points = fields.List(fields.String())
    crop_url = fields.String(
        allow_none=True, metadata={"description": "The answer's image as it sits on the page (offline reader)."}
    )


class OverrideSchema(Schema):
    is_correct = fields.Boolean()
    score = fields.Float()
    error_type = fields.String()
    knowledge_points = fields.List(fields.String(), validate=validate.Length(max=10))
    student_answer = fields.String(
        validate=validate.Length(min=1, max=500),
        metadata={
            "description": "The teacher's reading of the answer, where markq misread it: it replaces the reading "
            "in the mistake notebook and, without is_correct or score, is marked against the key."
        },
    )


class WindowArgs(Schema):
    """A report's time window (a class's, a student's)."""

    since = fields.DateTime(metadata={"description": "Papers submitted at or after this time."})
    until = fields.DateTime(metadata={"description": "Papers submitted before this time."})


class StudentArgs(WindowArgs):
    exam = fields.UUID(metadata={"description": "Only this exam."})


class StudentExamSchema(Schema):
    exam_id = fields.UUID()
    title = fields.String()
    subject = fields.String()
    paper_id = fields.UUID()
    class_label = fields.String()
    status = fields.String()
    score = fields.Float(allow_none=True)
    max_score = fields.Float(allow_none=True)
    pending_points = fields.Float()
    created_at = fields.DateTime()


class MistakeSchema(Schema):
    exam = fields.String()
    date = fields.DateTime()
    question_id = fields.String()
    question_text = fields.String(metadata={"description": "The question as the answer key gives it (prompt)."})
    student_answer = fields.String()
    correct_answer = fields.String()
    error_type = fields.String()
    explanation = fields.String()
    correction = fields.String()


class NotebookGroupSchema(Schema):
    knowledge_point = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    mistakes = fields.List(fields.Nested(MistakeSchema))


class PracticeArgs(StudentArgs):
    """The student's weak points over the window (or one exam), practised in a language."""

    language = fields.String(load_default="zh", validate=validate.OneOf(["zh", "en"]))
    source = fields.String(load_default="auto", validate=validate.OneOf(["auto", "templates", "model"]))


class PracticeQuestionSchema(Schema):
    question = fields.String()
    answer = fields.String()


class PracticeSetSchema(Schema):
    knowledge_point = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    questions = fields.List(fields.Nested(PracticeQuestionSchema))


class TrendPointSchema(Schema):
    exam_id = fields.UUID()
    date = fields.DateTime(metadata={"description": "When the exam's first paper of the scope came in."})
    missed = fields.Integer()
    attempted = fields.Integer()


class WeakPointSchema(MissedPointSchema):
    trend = fields.List(
        fields.Nested(TrendPointSchema),
        metadata={"description": "The point's missed out of attempted, exam by exam in date order."},
    )


class GradeWeakPointsSchema(Schema):
    grade = fields.Integer()
    papers = fields.Integer(metadata={"description": "Graded papers of exams at this grade in the window."})
    most_missed = fields.List(fields.Nested(MissedPointSchema))


class SchoolWeakPointsArgs(WindowArgs):
    top = fields.Integer(load_default=10, validate=validate.Range(1, 100), metadata={"description": "Points a grade."})


class ClassReportSchema(Schema):
    class_label = fields.String()
    papers = fields.Integer()
    students = fields.Integer()
    exams = fields.Integer()
    weak_points = fields.List(fields.Nested(WeakPointSchema))


class StudentReportSchema(Schema):
    student_ref = fields.String()
    exams = fields.List(fields.Nested(StudentExamSchema))
    weak_points = fields.List(fields.Nested(WeakPointSchema))
    mistake_notebook = fields.List(fields.Nested(NotebookGroupSchema))


class ExamListArgs(PageArgs):
    subject = fields.String(validate=validate.OneOf(SUBJECTS))
    grade = fields.Integer(validate=validate.Range(1, 9))


class StudentListArgs(PageArgs):
    class_label = fields.String(
        validate=validate.Length(1, 100), metadata={"description": "Only students with a paper in this class."}
    )


class StudentSummarySchema(Schema):
    student_ref = fields.String()
    class_label = fields.String(metadata={"description": "The class of her latest paper."})
    papers = fields.Integer()
    exams = fields.Integer()
    last_paper_at = fields.DateTime()


class ReviewArgs(PageArgs):
    pass


class KnowledgePointArgs(PageArgs):
    subject = fields.String(validate=validate.OneOf(SUBJECTS))
    grade = fields.Integer(validate=validate.Range(1, 9))


class KnowledgePointSchema(Schema):
    id = fields.String()
    school_id = fields.Integer(allow_none=True, metadata={"description": "Set for the school's own points."})
    refines = fields.String(allow_none=True)
    subject = fields.String()
    grade = fields.Integer()
    strand = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    aliases = fields.List(fields.String())
    vocabulary_version = fields.String()


class TemplatePageSchema(Schema):
    number = fields.Integer()
    width = fields.Integer()
    height = fields.Integer()
    read_size = fields.List(
        fields.Integer(),
        allow_none=True,
        metadata={"description": "[width, height] of the page as read (upright, levelled): the regions' pixels."},
    )
    preview_url = fields.String(
        allow_none=True,
        metadata={"description": "The page as read, each answer region drawn with its id (PNG); once ready."},
    )


class RegionSchema(Schema):
    page = fields.Integer(required=True, validate=validate.Range(min=1))
    box = fields.List(
        fields.Integer(validate=validate.Range(min=0)),
        required=True,
        validate=validate.Length(equal=4),
        metadata={"description": "[x0, y0, x1, y1]"},
    )


class TemplateSchema(Schema):
    status = fields.String(metadata={"description": "reading, ready or failed"})
    reason = fields.String(allow_none=True)
    pages = fields.List(fields.Nested(TemplatePageSchema))
    regions = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(RegionSchema),
        metadata={"description": "Each question's answer region on the blank paper."},
    )
    derived_from = fields.List(
        fields.UUID(),
        allow_none=True,
        metadata={"description": "The papers the blank paper was derived from; null when it was given."},
    )


class TemplateRegionsSchema(Schema):
    regions = fields.Dict(keys=fields.String(), values=fields.Nested(RegionSchema), required=True)


class BulkCreatedSchema(Schema):
    paper_id = fields.UUID()
    student_ref = fields.String()
    class_label = fields.String()
    pages = fields.Integer()
    status = fields.String()


class BulkExistingSchema(Schema):
    paper_id = fields.UUID()
    student_ref = fields.String()


class BulkRefusedSchema(Schema):
    file = fields.String(metadata={"description": "The file (or folder) in the archive."})
    reason = fields.String()
    status = fields.Integer(metadata={"description": "The HTTP status a paper of it alone would get."})
    student_ref = fields.String(allow_none=True)
    note = fields.String(metadata={"description": "When the student's whole paper was left out for it."})


class BulkResultSchema(Schema):
    created = fields.List(fields.Nested(BulkCreatedSchema), metadata={"description": "Papers queued now."})
    existing = fields.List(
        fields.Nested(BulkExistingSchema), metadata={"description": "Sent before: not created twice."}
    )
    refused = fields.List(fields.Nested(BulkRefusedSchema), metadata={"description": "Files not taken, and why."})


class BulkUploadCreateSchema(Schema):
    name = fields.String(
        required=True, validate=validate.Length(1, 255), metadata={"description": "The ZIP's file name."}
    )
    size = fields.Integer(required=True, validate=validate.Range(min=1), metadata={"description": "Its size in bytes."})
    class_label = fields.String(
        load_default="",
        validate=validate.Length(max=100),
        metadata={"description": "Class of every paper not given one by the roster."},
    )
    roster = fields.String(
        load_default=None,
        validate=validate.Length(max=1_000_000),
        metadata={"description": "Optional CSV text: file, student_ref[, class_label]."},
    )


class BulkUploadSchema(Schema):
    bulk_id = fields.UUID()
    exam_id = fields.UUID()
    name = fields.String()
    size = fields.Integer()
    status = fields.String(
        metadata={"description": "uploading, queued, unpacking, done, or failed (the archive itself refused)."}
    )
    status_reason = fields.String(allow_none=True)
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "Not completed by then, it is removed."})
    upload = fields.Nested(
        "UploadFileSchema", allow_none=True, metadata={"description": "While uploading: where to PUT the ZIP."}
    )
    complete_url = fields.String(metadata={"description": "POST here once the ZIP is uploaded."})
    status_url = fields.String(metadata={"description": "Poll here for the result."})
    result = fields.Nested(
        BulkResultSchema,
        allow_none=True,
        metadata={"description": "Once unpacked: every paper made and every file refused."},
    )


class EstimatePageSchema(Schema):
    page = fields.String()
    width = fields.Integer()
    height = fields.Integer()
    tokens = fields.Integer(metadata={"description": "The page as given, as the provider would scale it."})
    cost_usd = fields.Float()
    patches = fields.Integer()
    multiplier = fields.Float()
    sent_width = fields.Integer(metadata={"description": "Page files only: the page as markq sends it."})
    sent_height = fields.Integer()
    sent_tokens = fields.Integer()
    legible = fields.Boolean(
        metadata={"description": "Page files only: its writing stays tall enough to read as sent to this model."}
    )


class EstimatePaperSchema(Schema):
    image_tokens = fields.Integer()
    prompt_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cost_usd = fields.Float()
    cost_usd_with_cached_prefix = fields.Float()


class EstimateClassSchema(Schema):
    papers = fields.Integer()
    cost_usd = fields.Float()


class EstimateLaneSchema(Schema):
    calls_per_paper = fields.Float(metadata={"description": "The cascade calls only for papers with unsure answers."})
    prompt_tokens = fields.Integer()
    cached_tokens = fields.Integer(metadata={"description": "Of the prompt, for every paper after the first."})
    output_tokens = fields.Integer()
    paper_usd = fields.Float()
    paper_usd_with_cached_prefix = fields.Float()
    class_usd = fields.Float()


class EstimateModelSchema(Schema):
    scheme = fields.String(metadata={"description": "tile or patch: how the model counts image tokens."})
    flex = fields.Boolean(metadata={"description": "The model has a Flex tier (exam priority flex)."})
    crops_instead_of_pages = fields.Boolean(
        metadata={
            "description": "With the exam's blank paper: the vision lanes send one image of every question's "
            "crop instead of the pages, as it costs fewer tokens (priced so on those lanes)."
        }
    )
    lanes = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(EstimateLaneSchema),
        metadata={"description": "vision, economy (Batch API), flex (models with a Flex tier) and cascade."},
    )
    pages = fields.List(fields.Nested(EstimatePageSchema))
    paper = fields.Nested(EstimatePaperSchema)
    # "class" is a Python keyword: the field is named with data_key
    class_ = fields.Nested(EstimateClassSchema, attribute="class", data_key="class")


class ExamCostSchema(Schema):
    lane = fields.String(metadata={"description": "vision, economy, flex, cascade or offline (free)."})
    papers = fields.Integer()
    papers_finished = fields.Integer()
    papers_read_offline = fields.Integer(
        metadata={
            "description": "Cascade: papers read offline and not finished (a trial run holds them, or they wait "
            "for their call), each priced from the questions its reading leaves to the model."
        }
    )
    estimated_usd = fields.Float(
        metadata={
            "description": "The whole exam: what its finished papers cost, the calls of the papers read offline "
            "as their readings count them, and the estimate for the rest."
        }
    )
    actual_usd = fields.Float(metadata={"description": "What its finished papers cost."})
    per_paper_usd_from_rules = fields.Float(
        metadata={
            "description": "A paper by the token rules: the exam's own request, its pages as sent, replies "
            "as long as the ledger measured them."
        }
    )
    per_paper_usd = fields.Float(
        metadata={"description": "A paper left: the rules' figure weighted as two papers against the finished ones."}
    )
    measured = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "Where each measured figure came from."}
    )


class EstimateResultSchema(Schema):
    prices_taken = fields.String(metadata={"description": "When the prices were taken from the provider."})
    detail = fields.String()
    class_size = fields.Integer()
    assumptions = fields.Dict(keys=fields.String(), values=fields.Raw())
    models = fields.Dict(keys=fields.String(), values=fields.Nested(EstimateModelSchema))
    recommended = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        allow_none=True,
        metadata={
            "description": "The cheapest model and lane for the class whose pages stay legible (page files only): "
            "model, detail, lane, class_usd."
        },
    )


class ShareRequestSchema(Schema):
    student_ref = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Only this student's sheet; without it, the whole exam."},
    )
    days = fields.Integer(validate=validate.Range(min=1, max=90), metadata={"description": "Valid this many days (7)."})


class ShareLinkSchema(Schema):
    id = fields.Integer()
    url = fields.String(metadata={"description": "Shown once, when the link is made."})
    student_ref = fields.String(allow_none=True, metadata={"description": "None: the whole exam."})
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    school = fields.String()


class UploadFileDeclaredSchema(Schema):
    name = fields.String(
        required=True,
        validate=validate.Length(1, 255),
        metadata={"description": "The file's name: shown back in errors only, never part of a storage key."},
    )
    size = fields.Integer(required=True, validate=validate.Range(min=1), metadata={"description": "Bytes."})
    content_type = fields.String(
        required=True,
        metadata={"description": "image/jpeg, image/png, image/webp, image/tiff, image/heic or application/pdf."},
    )


class UploadCreateSchema(Schema):
    student_ref = fields.String(required=True, validate=validate.Length(1, 100))
    class_label = fields.String(load_default="", validate=validate.Length(max=100))
    files = fields.List(
        fields.Nested(UploadFileDeclaredSchema),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "The paper's files in page order."},
    )


# Papers a batch call may carry: a class or two of students in one request.
MAX_BATCH_PAPERS = 100


class UploadBatchCreateSchema(Schema):
    papers = fields.List(
        fields.Nested(UploadCreateSchema),
        required=True,
        validate=validate.Length(1, MAX_BATCH_PAPERS),
        metadata={"description": f"Up to {MAX_BATCH_PAPERS} students' papers, each as one upload declares it."},
    )


class UploadBatchCompleteSchema(Schema):
    paper_ids = fields.List(
        fields.UUID(),
        required=True,
        validate=validate.Length(1, MAX_BATCH_PAPERS),
        metadata={"description": f"Up to {MAX_BATCH_PAPERS} of the exam's papers whose files are all uploaded."},
    )


class UploadPartSchema(Schema):
    number = fields.Integer()
    offset = fields.Integer(metadata={"description": "The part's first byte in the file."})
    size = fields.Integer()
    url = fields.String(metadata={"description": "Where to PUT the part's bytes (no headers needed)."})
    uploaded = fields.Boolean(metadata={"description": "Already stored at its size."})


class UploadFileSchema(Schema):
    number = fields.Integer()
    name = fields.String()
    size = fields.Integer()
    method = fields.String(metadata={"description": "Always PUT."})
    url = fields.String(
        allow_none=True,
        metadata={"description": "Where to PUT the file's bytes, with `headers`; null when it goes in `parts`."},
    )
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    uploaded = fields.Boolean(metadata={"description": "Already stored at its declared size."})
    parts = fields.List(
        fields.Nested(UploadPartSchema),
        metadata={"description": "A large file: PUT each part's bytes to its URL (any order), then complete."},
    )


class UploadSchema(Schema):
    paper_id = fields.UUID()
    student_ref = fields.String()
    status = fields.String()
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "Not completed by then, it is removed."})
    files = fields.List(fields.Nested(UploadFileSchema))
    complete_url = fields.String(metadata={"description": "POST here once every file is uploaded."})


class UploadBatchSchema(Schema):
    papers = fields.List(fields.Nested(UploadSchema), metadata={"description": "In the order declared."})


class IncompletePaperSchema(Schema):
    paper_id = fields.UUID()
    error = fields.Nested(ErrorBodySchema, metadata={"description": "What completing it alone would answer."})


class UploadBatchCompletedSchema(Schema):
    papers = fields.List(
        fields.Nested(PaperSchema),
        metadata={"description": "The papers queued (or queued before: completing twice queues once), in order."},
    )
    incomplete = fields.List(
        fields.Nested(IncompletePaperSchema),
        metadata={"description": "Papers not queued: a file missing or of the wrong size, or no such paper."},
    )
