"""The LTI Advantage scopes this tool uses, and nothing more (what an instructor enables in the LMS)."""

from hub.lms.client import LINEITEM, MEMBERSHIP, SCORE

# Line items (find or make the assignment's column), scores (post grades), memberships (the roster).
TOOL_SCOPES = [LINEITEM, SCORE, MEMBERSHIP]
