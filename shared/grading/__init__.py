"""The grading domain: exams, answer keys, knowledge points, the reply schema and the pipeline."""
