"""The answer checks: will this answer be right? Image familiarity, the question's words and
form, and thresholds chosen on a validation table for MAX_ANSWER_RISK.
"""
