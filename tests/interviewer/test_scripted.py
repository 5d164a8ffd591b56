from interview.config import PACKAGE_DIR
from interview.interviewer import InterviewerAction, InterviewState, ScriptedInterviewer
from interview.plans import PlanCatalog

PLAN = PlanCatalog.load(PACKAGE_DIR / "plans").get("customer-support-screen")
LONG = "I listened to the customer, apologised, fixed the billing error and followed up next day."


def state(question_index=0, follow_ups_used=0, elapsed=0.0) -> InterviewState:
    return InterviewState(PLAN, question_index, follow_ups_used, elapsed)


async def test_opening_greets_and_asks_first_question():
    reply = await ScriptedInterviewer().opening(state())
    assert reply.text.startswith(PLAN.greeting)
    assert reply.text.endswith(PLAN.questions[0].text)
    assert (reply.action, reply.question_index) == (InterviewerAction.question, 0)


async def test_short_answer_gets_the_follow_up_once():
    interviewer = ScriptedInterviewer(short_answer_words=8)
    reply = await interviewer.reply(state(), "I said sorry.")
    assert reply.action is InterviewerAction.follow_up
    assert reply.text == PLAN.questions[0].follow_ups[0]
    assert (reply.question_index, reply.follow_ups_used) == (0, 1)
    # Follow-ups used up: another short answer moves on.
    reply = await interviewer.reply(state(follow_ups_used=1), "Yes.")
    assert reply.action is InterviewerAction.question
    assert (reply.question_index, reply.follow_ups_used) == (1, 0)


async def test_full_answer_acknowledges_and_asks_next_question():
    reply = await ScriptedInterviewer().reply(state(), LONG)
    assert reply.action is InterviewerAction.question
    assert reply.question_index == 1
    assert reply.text.endswith(PLAN.questions[1].text)
    assert reply.text != PLAN.questions[1].text  # a brief acknowledgement comes first


async def test_last_answer_closes():
    last = len(PLAN.questions) - 1
    reply = await ScriptedInterviewer().reply(state(question_index=last), LONG)
    assert reply.closes
    assert reply.text.endswith(PLAN.closing)
    assert reply.question_index == last


async def test_spent_time_budget_closes_early_without_follow_up():
    over = PLAN.time_budget_minutes * 60 + 1
    reply = await ScriptedInterviewer().reply(state(elapsed=over), "Short.")
    assert reply.closes
    assert "out of time" in reply.text


async def test_every_line_of_a_whole_interview_is_among_its_fixed_lines():
    # The speech cache keeps only fixed lines on disk: each line the script says must be one.
    interviewer = ScriptedInterviewer(short_answer_words=8)
    fixed = set(interviewer.fixed_lines(PLAN))
    said = [(await interviewer.opening(state())).text]
    for index, question in enumerate(PLAN.questions):
        for used in range(len(question.follow_ups)):
            said.append((await interviewer.reply(state(index, used), "Not much.")).text)
        said.append((await interviewer.reply(state(index, len(question.follow_ups)), LONG)).text)
    budget = PLAN.time_budget_minutes * 60
    said.append((await interviewer.reply(state(1, elapsed=budget), LONG)).text)
    assert set(said) <= fixed
    assert len(said) > len(PLAN.questions) + 2


def test_no_fixed_line_holds_words_the_plan_and_script_do_not():
    words = " ".join(ScriptedInterviewer().fixed_lines(PLAN))
    assert "customer, apologised" not in words and PLAN.greeting in words
