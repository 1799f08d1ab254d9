"""LLM-as-judge: first-tier ``llm_judge`` scorers and the second-tier confirmer.

``exporter.scoring`` builds them from the config with ``make_judge_scorer`` and
``build_confirmers``; nothing here imports the rest of ``exporter.scoring``.
"""

from exporter.scoring.judge._breaker import BreakerState, CircuitBreaker
from exporter.scoring.judge._budget import DailyBudget
from exporter.scoring.judge._build import (
    build_confirmers,
    fresh_clients,
    judge_client,
    judge_clients,
    make_judge_scorer,
)
from exporter.scoring.judge._client import Completion, JudgeClient, parse_retry_after
from exporter.scoring.judge._confirm import CONFIRMED_FLAG, JudgeConfirmer
from exporter.scoring.judge._errors import (
    BreakerOpen,
    InvalidVerdict,
    JudgeError,
    JudgeFailed,
    OverBudget,
)
from exporter.scoring.judge._grader import Grader
from exporter.scoring.judge._health import ERROR_OUTCOMES, JudgeHealth, LastError
from exporter.scoring.judge._rubrics import Rubric, messages_for, rubric_for, shipped_rubrics
from exporter.scoring.judge._scorer import JudgeScorer
from exporter.scoring.judge._transcript import render_transcript
from exporter.scoring.judge._verdict import Verdict, parse_verdict

__all__ = [
    "CONFIRMED_FLAG",
    "ERROR_OUTCOMES",
    "BreakerOpen",
    "BreakerState",
    "CircuitBreaker",
    "Completion",
    "DailyBudget",
    "Grader",
    "InvalidVerdict",
    "JudgeClient",
    "JudgeConfirmer",
    "JudgeError",
    "JudgeFailed",
    "JudgeHealth",
    "JudgeScorer",
    "LastError",
    "OverBudget",
    "Rubric",
    "Verdict",
    "build_confirmers",
    "fresh_clients",
    "judge_client",
    "judge_clients",
    "make_judge_scorer",
    "messages_for",
    "parse_retry_after",
    "parse_verdict",
    "render_transcript",
    "rubric_for",
    "shipped_rubrics",
]
