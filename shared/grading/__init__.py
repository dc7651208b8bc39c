"""The grading domain: exams, answer keys, knowledge points, the lanes and their steps, the reply schema, review and reports."""
