"""Intake: a paper's pages checked and stored, class archives, idempotent submissions, PDFs."""
