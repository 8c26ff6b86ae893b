"""Helpers of the student tutorials (``notebooks/tutorials/``): recovering known truths from
simulated data, side by side with the estimates.

May import: anything below it (data, the model families, the report's figures); nothing
imports it but the tutorials and their tests.
"""
